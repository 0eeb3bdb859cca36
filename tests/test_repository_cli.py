"""``modelport models ...`` through click's runner, on a real repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from onnx import TensorProto, helper

from modelport.cli import cli
from modelport.repository import Repository
from tests.onnx_models import doubler

X = np.arange(12, dtype=np.float32).reshape(4, 3)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "doubler.onnx"
    onnx.save_model(doubler(), str(path))
    return path


@pytest.fixture
def sample_file(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path


def run(root: Path, *args: str, code: int = 0, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(
        cli, ["models", "--repo", str(root), *args], input=stdin, env={"COLUMNS": "200"}
    )
    assert result.exit_code == code, (result.output, result.exception)
    return result


def fail(root: Path, *args: str) -> str:
    """Run a command that must fail: exit 2 and exactly one line on stderr, no traceback."""
    result = run(root, *args, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def seeded(root: Path) -> Path:
    """Two versions of "double", registered through the API (the CLI's register is tested on
    its own below)."""
    with Repository(root) as repo:
        repo.register(doubler(), "double", sample={"x": X})
        repo.register(doubler(), "double", sample={"x": X})
    return root


def test_register_list_show(root: Path, onnx_file: Path, sample_file: Path) -> None:
    out = run(root, "register", str(onnx_file), "--name", "double", "--sample", str(sample_file),
              "--tag", "team=vision", "--description", "Doubles", "--alias", "production").output
    assert "registered double:1" in out
    assert "verification passed" in out
    assert "aliases: production" in out
    with Repository(root) as repo:
        found = repo.load("double@production")
        assert found.tags == {"team": "vision"}
        np.testing.assert_array_equal(found.input_example()["x"], X)

    listing = run(root, "list").output
    assert "double" in listing and "production->1" in listing and "Doubles" in listing
    versions = run(root, "list", "double").output
    assert "pass" in versions and "team=vision" in versions
    shown = run(root, "show", "double@production", "--check").output
    for expected in ("double:1", "verification passed", "model.onnx", "batch", "float32",
                     "checksums    ok", "production"):
        assert expected in shown
    data = json.loads(run(root, "show", "double", "--json").output)
    assert data["ref"] == "double:1" and data["manifest"]["framework"] == "onnx"
    assert data["manifest"]["verification"]["passed"] is True
    models = json.loads(run(root, "list", "--json").output)
    assert models[0]["name"] == "double" and models[0]["latest_version"] == 1


def test_show_renders_signature_files_and_markdown(seeded: Path) -> None:
    run(seeded, "tag", "set", "double:1", "note=[not markup]")
    run(seeded, "describe", "double:1", "# Title\n\nSome *text*.")
    out = run(seeded, "show", "double:1").output
    assert "[batch, 3]" in out  # shapes and tags are printed literally, not as rich markup
    assert "note=[not markup]" in out
    assert "input_example.npz" in out and "model.onnx" in out
    assert "Title" in out and "not verified" in out
    assert "opset ai.onnx 17" in out


def test_repo_option_on_command_and_environment(seeded: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "list", "--repo", str(seeded)])
    assert result.exit_code == 0 and "double" in result.output
    result = runner.invoke(cli, ["models", "show", "double"], env={"MODELPORT_HOME": str(seeded)})
    assert result.exit_code == 0 and "double:2" in result.output


def test_aliases(seeded: Path) -> None:
    assert "double@prod -> double:1" in run(seeded, "alias", "set", "double", "prod", "1").output
    assert "(moved from 1)" in run(seeded, "alias", "set", "double", "prod", "2").output
    line = fail(seeded, "alias", "set", "double", "prod", "1", "--no-move")
    assert "already points at double:2" in line
    fail(seeded, "alias", "set", "double", "9bad", "1")
    fail(seeded, "alias", "set", "double", "ok", "x")
    fail(seeded, "alias", "set", "double", "ok", "7")
    run(seeded, "alias", "rm", "double", "prod")
    assert "has no alias 'prod'" in fail(seeded, "show", "double@prod")
    fail(seeded, "alias", "rm", "double", "prod")


def test_tags_and_descriptions(seeded: Path) -> None:
    run(seeded, "tag", "set", "double", "owner=ml", "team=a")
    run(seeded, "tag", "set", "double:1", "stage=dev")
    run(seeded, "alias", "set", "double", "prod", "2")
    run(seeded, "tag", "set", "double@prod", "stage=prod")
    run(seeded, "describe", "double", "Model *docs*")
    run(seeded, "describe", "double:2", "-", stdin="from stdin\n")
    with Repository(seeded) as repo:
        assert repo.model("double").tags == {"owner": "ml", "team": "a"}
        assert repo.resolve("double:1").tags == {"stage": "dev"}
        assert repo.resolve("double:2").tags == {"stage": "prod"}
        assert repo.model("double").description == "Model *docs*"
        assert repo.resolve("double:2").description == "from stdin\n"
    run(seeded, "tag", "rm", "double", "owner")
    run(seeded, "tag", "rm", "double:1", "stage")
    with Repository(seeded) as repo:
        assert repo.model("double").tags == {"team": "a"}
        assert repo.resolve("double:1").tags == {}
    assert "KEY=VALUE" in fail(seeded, "tag", "set", "double", "novalue")
    fail(seeded, "tag", "set", "double", "a/b=1")
    fail(seeded, "tag", "rm", "double", "missing")
    fail(seeded, "describe", "nope", "text")


def test_delete(seeded: Path) -> None:
    run(seeded, "alias", "set", "double", "production", "2")
    line = fail(seeded, "delete", "double:2")
    assert line == "error: alias 'production' points at double:2; move or remove it first"
    assert "name the version" in fail(seeded, "delete", "double")
    assert "deleted double:1" in run(seeded, "delete", "double:1").output
    fail(seeded, "show", "double:1")
    run(seeded, "alias", "rm", "double", "production")
    run(seeded, "delete", "double:2")
    assert "no versions" in fail(seeded, "show", "double")


def test_export_import_check_gc(seeded: Path, tmp_path: Path) -> None:
    archive = tmp_path / "double.tar.gz"
    assert "exported double:2" in run(seeded, "export", "double:2", str(archive)).output
    other = tmp_path / "other"
    assert "imported double:1 (was double:2)" in run(other, "import", str(archive)).output
    assert "imported copy:1" in run(other, "import", str(archive), "--name", "copy").output
    assert "all versions intact" in run(other, "check").output
    assert "removed 0 leftover(s)" in run(other, "gc").output
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"definitely not gzip")
    assert "is corrupt or not a modelport archive" in fail(other, "import", str(bad))
    fail(other, "import", str(tmp_path / "missing.tar.gz"))
    # check reports a tampered version and exits 2
    with Repository(other) as repo:
        model = repo.resolve("copy:1").model_path
    model.write_bytes(model.read_bytes() + b"!")
    result = run(other, "check", code=2)
    assert "copy:1" in result.stderr and "checksum mismatch" in result.stderr


def test_errors_are_one_line_with_exit_2(seeded: Path, tmp_path: Path) -> None:
    assert "model 'nope' not found" in fail(seeded, "show", "nope")
    assert "no version 9" in fail(seeded, "show", "double:9")
    assert "invalid model name" in fail(seeded, "show", "../etc")
    fail(seeded, "list", "nope")
    fail(seeded, "export", "nope:1", str(tmp_path / "x.tar.gz"))
    not_repo = tmp_path / "notrepo"
    not_repo.mkdir()
    (not_repo / "file.txt").write_text("x")
    assert "is not a modelport repository" in fail(not_repo, "list")
    assert (not_repo / "file.txt").read_text() == "x" and len(list(not_repo.iterdir())) == 1
    (tmp_path / "plainfile").write_text("x")
    assert "is not a modelport repository" in fail(tmp_path / "plainfile" / "repo", "list")
    # Reading from a mistyped path is an error, and does not leave an empty repository there.
    assert "is not a modelport repository" in fail(tmp_path / "typo", "show", "m")
    assert not (tmp_path / "typo").exists()


def custom_op_model() -> onnx.ModelProto:
    """Valid ONNX that ONNX Runtime cannot load (an operator of an unknown domain): its
    verification fails."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "custom", [x], [y])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    model.ir_version = 8
    return model


def test_failed_verification_is_refused_unless_forced(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "custom.onnx"
    onnx.save_model(custom_op_model(), str(path))
    result = run(root, "register", str(path), "-n", "custom", code=1)  # VerificationFailedError
    line = result.stderr.strip()
    assert line.startswith("error: not registering 'custom': verification failed")
    assert "--force" in line and "\n" not in line
    with Repository(root) as repo:
        assert repo.list_models() == []
    out = run(root, "register", str(path), "-n", "custom", "--force").output
    assert "registered custom:1" in out and "registered with --force" in out
    with Repository(root) as repo:
        found = repo.load("custom")
        assert found.manifest.forced is True and found.manifest.verified is False
    assert "FAILED (forced)" in run(root, "list", "custom").output


def test_register_errors(root: Path, onnx_file: Path, tmp_path: Path) -> None:
    assert "does not exist" in fail(root, "register", str(tmp_path / "missing.onnx"), "-n", "x")
    assert "invalid model name" in fail(root, "register", str(onnx_file), "-n", "a/b")
    assert "KEY=VALUE" in fail(root, "register", str(onnx_file), "-n", "x", "--tag", "oops")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage")
    fail(root, "register", str(garbage), "-n", "x")
    with Repository(root) as repo:
        assert repo.list_models() == []
