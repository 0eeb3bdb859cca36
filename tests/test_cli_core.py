"""The convert / verify / inspect / providers / view commands, through click and the real entry
point (``python -m formats``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from formats.cli import cli
from tests import onnx_models

ENTRY_POINT = [sys.executable, "-m", "formats"]


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def doubler(tmp_path: Path) -> Path:
    return onnx_models.save(onnx_models.doubler(), tmp_path / "doubler.onnx")


def test_convert_onnx_passes_through_and_writes_a_copy(doubler: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out" / "copy.onnx", tmp_path / "report.json"
    np.save(tmp_path / "x.npy", np.ones((3, 3), np.float32))
    result = _run(
        "convert", doubler, "-o", out, "--sample", tmp_path / "x.npy", "--report-json", report
    )

    assert result.exit_code == 0, result.output
    assert "verification passed" in result.output and f"wrote {out}" in result.output
    assert onnx.load(str(out)).graph == onnx.load(str(doubler)).graph
    data = json.loads(report.read_text())
    assert data["framework"] == "onnx" and data["output"] == str(out)
    assert data["verification"]["passed"] is True
    assert data["signature"]["inputs"][0] == {
        "name": "x",
        "dtype": "float32",
        "shape": ["batch", 3],
    }


def test_convert_onnx_default_output_is_the_input_so_nothing_is_written(doubler: Path) -> None:
    before = doubler.read_bytes()
    result = _run("convert", doubler)
    assert result.exit_code == 0, result.output
    assert "nothing written" in result.output
    assert doubler.read_bytes() == before


def test_failed_verification_exits_1_prints_the_report_and_writes_nothing(tmp_path: Path) -> None:
    model = onnx_models.save(onnx_models.sequence_output(), tmp_path / "seq.onnx")
    out = tmp_path / "seq-copy.onnx"
    result = _run("convert", model, "-o", out)

    assert result.exit_code == 1
    assert "servable" in result.output and "FAIL" in result.output
    assert "not written" in result.output
    assert not out.exists()

    forced = _run("convert", model, "-o", out, "--force")
    assert forced.exit_code == 1 and out.exists()  # written on request, still a failure


def test_verify_command_json_and_exit_codes(doubler: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    ok = _run("verify", doubler, "--original", doubler, "--json", report)
    assert ok.exit_code == 0, ok.output
    data = json.loads(report.read_text())
    assert data["passed"] is True and data["compared"] is True
    assert {c["name"] for c in data["cases"]} >= {"sample", "negated", "batch=7"}

    tripler = onnx_models.doubler()
    tripler.graph.initializer[0].raw_data = np.array(3.0, np.float32).tobytes()
    other = onnx_models.save(tripler, tmp_path / "tripler.onnx")
    bad = _run("verify", other, "--original", doubler, "--json", "-")
    assert bad.exit_code == 1
    data = json.loads(bad.stdout)  # with '-', stdout is exactly the JSON
    assert data["passed"] is False
    assert all(not o["passed"] for o in data["outputs"])


def test_inspect_and_providers_json(doubler: Path) -> None:
    result = _run("inspect", doubler, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["op_histogram"] == {"Mul": 1} and summary["parameter_count"] == 1

    table = _run("inspect", doubler)
    assert table.exit_code == 0 and "Mul" in table.output

    providers = _run("providers", "--json")
    assert providers.exit_code == 0
    data = json.loads(providers.stdout)
    assert "CPUExecutionProvider" in data["available"]
    assert set(data["available"]) <= set(data["all"])


def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, doubler: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07\x12\xff\xff\xff not a model")
    assert "not a valid ONNX model" in _one_line_error(_run("convert", corrupt))
    assert "not a valid ONNX model" in _one_line_error(_run("inspect", corrupt))
    assert "not a valid ONNX model" in _one_line_error(_run("verify", corrupt))

    unknown = tmp_path / "model.xyz"
    unknown.write_bytes(b"whatever")
    assert "cannot tell which framework" in _one_line_error(_run("convert", unknown))

    assert "--original" in _one_line_error(_run("verify", unknown))  # arguments swapped

    missing = tmp_path / "missing.pt"
    assert "does not exist" in _one_line_error(_run("convert", missing))
    assert "does not exist" in _one_line_error(_run("verify", missing))

    assert "unknown execution provider" in _one_line_error(
        _run("verify", doubler, "--provider", "nonsense")
    )
    # click's own usage errors (bad option values) exit 2 as well
    bad_axis = _run("convert", doubler, "--dynamic-axis", "x-0-batch")
    assert bad_axis.exit_code == 2 and "NAME:AXIS:SYMBOL" in bad_axis.output + bad_axis.stderr


def test_real_entry_point(doubler: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [*ENTRY_POINT, "inspect", "--json", str(doubler)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["inputs"][0]["name"] == "x"

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00\x01\x02garbage")
    bad = subprocess.run([*ENTRY_POINT, "convert", str(corrupt)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_every_listed_command_loads_lazily_and_by_its_name() -> None:
    import importlib

    import click

    from formats.cli import _COMMAND_MODULES, cli
    from formats.cli.core import COMMANDS

    assert [c.name for c in COMMANDS] == ["convert", "verify", "inspect", "providers", "view"]
    for command in COMMANDS:
        assert _COMMAND_MODULES.get(str(command.name)) == "formats.cli.core", command.name
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
    # Every command a module defines is listed, so none is unreachable.
    defined = {
        c.name for m in set(_COMMAND_MODULES.values()) for c in importlib.import_module(m).COMMANDS
    }
    assert defined == set(_COMMAND_MODULES)
    # Looking up one of these commands imports only their module, not the other command modules.
    code = (
        "import sys; from formats.cli import cli; import click;"
        "cli.get_command(click.Context(cli), 'view');"
        "print(sorted(m for m in sys.modules"
        " if m.startswith('formats.cli.') and not m.startswith('formats.cli._')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['formats.cli.core']"
