"""Every command answers a user's mistake with one line on stderr and exit code 2, never a
traceback, and leaves nothing half-written; the Python API raises the error tree for the same.

Found by an adversarial pass over every command but ``serve`` (which has its own tests); each
case here failed before its fix (a traceback, "Aborted!", click's multi-line usage block, a
silently ignored value, or a write that destroyed data).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from modelport.cli import cli
from modelport.errors import InputError, ModelportError, UsageError
from tests import onnx_models


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny real models, good and broken data files, and a repository holding two models."""
    root = tmp_path_factory.mktemp("bad-input")
    paths = {
        "doubler": onnx_models.save(onnx_models.doubler(), root / "doubler.onnx"),
        "mlp": onnx_models.save(onnx_models.mlp(), root / "mlp.onnx"),
        "x": root / "x.npy",
        "mlp_x": root / "mlp_x.npy",
        "nan": root / "nan.npy",
        "empty": root / "empty.npy",
        "header_only": root / "header_only.csv",
        "garbage": root / "garbage.npy",
        "truncated_npz": root / "truncated.npz",
        "pickle": root / "model.pkl",
        "dir": root / "a_directory",
        "file": root / "a_file",
        "repo": root / "repo",
    }
    np.save(paths["x"], np.ones((3, 3), np.float32))
    np.save(paths["mlp_x"], np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    np.save(paths["nan"], np.full((8, 4), np.nan, np.float32))
    paths["empty"].write_bytes(b"")
    paths["header_only"].write_text("x_0,x_1,x_2\n")
    paths["garbage"].write_bytes(b"garbage, not an array")
    np.savez(root / "whole.npz", x=np.ones((3, 3), np.float32))
    whole = (root / "whole.npz").read_bytes()
    paths["truncated_npz"].write_bytes(whole[: len(whole) // 2])
    paths["pickle"].write_bytes(pickle.dumps({"not": "a model"}))  # starts with byte 0x80
    paths["dir"].mkdir()
    paths["file"].write_text("a regular file\n")
    from modelport.repository import Repository

    with Repository(paths["repo"]) as repo:
        repo.register(paths["doubler"], "dbl", sample=np.ones((2, 3), np.float32))
        repo.register(paths["mlp"], "mlp", sample=np.ones((2, 4), np.float32))
    return paths


def _run(args: list[Any]) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result: Result, *expected: str) -> str:
    """Exit 2, stderr is exactly one 'error: ...' line naming the problem, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, (result.output, result.stderr)
    assert "Traceback" not in result.output and "Aborted" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _args(files: dict[str, Path], template: list[str]) -> list[str]:
    """``{name}`` in a template is the fixture file ``name``."""
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in template]


# --------------------------------------------------------------------------- click's own errors
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (["nope"], "no such command 'nope'"),
        (["--nope"], "no such option '--nope'"),
        (["convert"], "missing argument 'MODEL'"),
        (["convert", "{doubler}", "--sample", "{dir}"], "'--sample'"),
        (["convert", "{doubler}", "--dynamic-axis", "x"], "NAME:AXIS:SYMBOL"),
        (["models", "--repo", "{file}", "list"], "'--repo'"),
        (["models", "nope"], "no such command"),
        (["bench", "dbl", "--batch-sizes", "0"], "'--batch-sizes'"),
        (["bench", "dbl", "--repo", "{repo}", "--plot", "{dir}/chart.jpg"], "'--plot'"),
        (["optimize", "dbl", "--level", "max"], "'--level'"),
        (["demo", "--repo", "{file}"], "'--repo'"),
    ],
)
def test_usage_errors_are_one_line_with_a_help_hint(
    files: dict[str, Path], template: list[str], expected: str
) -> None:
    line = _one_line_error(_run(_args(files, template)), expected)
    assert "--help'" in line  # the fix: where to look


def test_debug_keeps_clicks_usage_block(files: dict[str, Path]) -> None:
    result = _run(["--debug", "convert"])
    assert result.exit_code == 2 and "Usage:" in result.stderr


# --------------------------------------------------------------------------- bad values
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # data files: empty and garbage .npy ("Aborted!" and allow_pickle advice before)
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--sample", "{empty}"], "it is empty"),
        (["verify", "{doubler}", "--sample", "{garbage}"], "no NumPy header"),
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--sample", "{truncated_npz}"], "cannot read"),
        # a table with a header and no rows ("shape [0, 0]" mismatch before)
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--sample", "{header_only}"], "has no rows"),
        (["models", "--repo", "{repo}", "register", "{doubler}", "-n", "z", "--sample", "{dir}"],
         "is a directory"),
        (["predict", "{doubler}", "-i", "{empty}", "-o", "{dir}/p.npy", "-q"], "it is empty"),
        (["predict", "{doubler}", "-i", "{dir}", "-o", "{dir}/p.npy", "-q"], "is a directory"),
        # options that were ignored or accepted silently
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--opset", "0"], "--opset 0 is out of range"),
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--keep-float64"], "--keep-float64"),
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--input-name", ""], "non-empty name"),
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--output-name", "y", "--output-name", "y"],
         "more than once"),
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--input-name", "a", "--output-name", "a"],
         "both an input and an output"),
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--atol", "nan"], "--atol and --rtol"),
        (["verify", "{doubler}", "--rtol", "nan"], "--atol and --rtol"),
        (["predict", "dbl", "--repo", "{repo}", "-i", "{x}", "-o", "{dir}/p.npy", "--threads", "-1"],
         "thread counts"),
        (["predict", "", "-i", "{x}", "-o", "{dir}/p.npy"], "no model given"),
        (["predict", "dbl", "-i", "{x}", "-o", "{dir}/p.npy", "--server", "notaurl"],
         "not an http(s) URL"),
        (["bench", "dbl", "--repo", "{repo}", "--duration", "nan"], "--duration"),
        (["bench", "dbl", "--repo", "{repo}", "--warmup", "-1"], "--warmup"),
        (["optimize", "mlp", "--repo", "{repo}", "--min-speedup", "-1"], "--min-speedup"),
        (["optimize", "mlp", "--repo", "{repo}", "--min-speedup", "nan"], "--min-speedup"),
        (["optimize", "mlp", "--repo", "{repo}", "--quantize", "static", "--calibration", "{nan}"],
         "NaN or infinite"),
        (["deploy", "dbl", "--repo", "{repo}", "--out", "{dir}/ctx", "--image", ""],
         "invalid image name"),
        (["deploy", "dbl", "--repo", "{repo}", "--out", "{dir}/ctx", "--wheel", "{dir}"],
         "is a directory"),
        (["deploy", "{doubler}", "--repo", "{repo}", "--out", "{dir}/ctx"], "register"),
        (["models", "--repo", "{repo}", "import", "{dir}"], "is a directory"),
        (["demo", "--epochs", "0"], "--epochs"),
        (["demo", "--port", "-1"], "--port"),
        (["demo", "--host", ""], "--host"),
        # a file that is not what the framework reads (UnicodeDecodeError traceback before)
        (["convert", "{pickle}", "-o", "{dir}/o.onnx", "--framework", "xgboost", "--sample", "{x}"],
         "xgboost cannot load"),
        (["convert", "{doubler}", "-o", "{dir}/o.onnx", "--framework", "lightgbm", "--sample", "{x}"],
         "not a LightGBM text model"),
    ],
)
def test_bad_values_are_one_line_errors(
    files: dict[str, Path], template: list[str], expected: str
) -> None:
    _one_line_error(_run(_args(files, template)), expected)
    assert not (files["dir"] / "o.onnx").exists() and not (files["dir"] / "p.npy").exists()
    assert not (files["dir"] / "ctx").exists()


def test_bench_json_to_a_directory_is_an_error_not_a_traceback(files: dict[str, Path]) -> None:
    args = ["bench", "dbl", "--repo", files["repo"], "--iterations", "1", "--warmup", "0"]
    result = _run([*args, "--batch-sizes", "1", "--json", files["dir"]])
    _one_line_error(result, "is a directory")
    assert not [p for p in files["dir"].parent.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- nothing destroyed
def _fresh_repo(files: dict[str, Path], tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(files["repo"], repo)
    return repo


def test_deploy_never_replaces_the_repository_it_reads(
    files: dict[str, Path], tmp_path: Path
) -> None:
    repo = _fresh_repo(files, tmp_path)
    packages = repo / "packages"
    before = sorted(p.relative_to(packages) for p in packages.rglob("*"))
    for out in (repo, repo.parent, packages / "ctx"):
        result = _run(["deploy", "dbl", "--repo", repo, "--out", out, "--force"])
        _one_line_error(result, "overlaps the repository")
    assert sorted(p.relative_to(packages) for p in packages.rglob("*")) == before
    assert "all versions intact" in _run(["models", "--repo", repo, "check"]).output


def test_export_never_writes_into_the_repository(files: dict[str, Path], tmp_path: Path) -> None:
    repo = _fresh_repo(files, tmp_path)
    stored = repo / "packages" / "dbl" / "1" / "model.onnx"
    before = stored.read_bytes()
    result = _run(["models", "--repo", repo, "export", "dbl", stored])
    _one_line_error(result, "inside the repository")
    assert stored.read_bytes() == before


def test_a_bad_alias_registers_nothing(files: dict[str, Path], tmp_path: Path) -> None:
    repo = _fresh_repo(files, tmp_path)
    for alias in ("", "1", "a:b"):
        result = _run(
            ["models", "--repo", repo, "register", files["doubler"], "-n", "new", "--alias", alias]
        )
        _one_line_error(result, "alias")
    assert not (repo / "packages" / "new").exists()


def test_check_reports_every_problem_on_its_one_error_line(
    files: dict[str, Path], tmp_path: Path
) -> None:
    repo = _fresh_repo(files, tmp_path)
    for name in ("dbl", "mlp"):
        stored = repo / "packages" / name / "1" / "model.onnx"
        stored.chmod(0o644)
        stored.write_bytes(stored.read_bytes()[:-1] + b"!")
    line = _one_line_error(_run(["models", "--repo", repo, "check"]), "2 version(s)")
    assert "'dbl:1'" in line and "'mlp:1'" in line and "checksum mismatch" in line


def test_failed_registration_exits_1_with_its_report(
    files: dict[str, Path], tmp_path: Path
) -> None:
    repo = _fresh_repo(files, tmp_path)
    model = onnx_models.save(onnx_models.sequence_output(), tmp_path / "seq.onnx")
    result = _run(["models", "--repo", repo, "register", model, "-n", "seq"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "servable" in result.stdout and "FAIL" in result.stdout  # the report, printed
    assert not (repo / "packages" / "seq").exists()


# --------------------------------------------------------------------------- the Python API
def test_api_raises_the_error_tree(files: dict[str, Path]) -> None:
    import modelport
    from modelport.datafiles import read_sample
    from modelport.runtime import Session, SessionOptions

    with pytest.raises(InputError, match="it is empty"):
        read_sample(files["empty"])
    with pytest.raises(InputError, match="is a directory"):
        read_sample(files["dir"])
    with pytest.raises(UsageError, match="out of range"):
        modelport.convert(files["doubler"], opset=0)
    with pytest.raises(UsageError, match="--atol and --rtol"):
        modelport.verify(files["doubler"], atol=float("nan"))
    with pytest.raises(UsageError, match="thread counts"):  # not wrapped as a load error
        Session(files["doubler"], SessionOptions(intra_op_threads=-1))
    session = Session(files["doubler"])
    with pytest.raises(InputError, match="not a numpy array"):
        session.run_checked({"x": [[1.0, 2.0, 3.0]]})  # type: ignore[dict-item]
    result = modelport.convert(files["doubler"], sample=np.ones((2, 3), np.float32))
    with pytest.raises(UsageError, match="is a directory"):
        result.save(files["dir"])
    with pytest.raises(ModelportError, match="not a LightGBM text model"):
        modelport.convert(files["doubler"], framework="lightgbm", sample=np.ones((2, 3)))


def test_torch_opset_the_dynamo_exporter_cannot_make_is_not_ignored() -> None:
    """torch.onnx's dynamo exporter keeps opset 18 when asked for 12, without raising."""
    torch = pytest.importorskip("torch")
    import modelport
    from modelport.errors import ConversionError

    sample = np.ones((2, 3), np.float32)
    with pytest.raises(ConversionError, match="not the requested opset 12"):
        modelport.convert(torch.nn.Linear(3, 2), sample=sample, opset=12, exporter="dynamo")
