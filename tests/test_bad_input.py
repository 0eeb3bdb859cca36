"""Every command answers a user's mistake with one line on stderr and exit code 2, never a
traceback, and leaves nothing half-written; the Python API raises the error tree for the same.

Found by an adversarial pass over every command; each case here failed before its fix (a
traceback, "Aborted!", click's multi-line usage block, a silently ignored value, or a write that
destroyed data).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from formats.cli import cli
from formats.errors import InputError, ModelportError, UsageError
from tests import onnx_models


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny real models, and good and broken data files."""
    root = tmp_path_factory.mktemp("bad-input")
    paths = {
        "doubler": onnx_models.save(onnx_models.doubler(), root / "doubler.onnx"),
        "x": root / "x.npy",
        "empty": root / "empty.npy",
        "header_only": root / "header_only.csv",
        "garbage": root / "garbage.npy",
        "truncated_npz": root / "truncated.npz",
        "pickle": root / "model.pkl",
        "dir": root / "a_directory",
    }
    np.save(paths["x"], np.ones((3, 3), np.float32))
    paths["empty"].write_bytes(b"")
    paths["header_only"].write_text("x_0,x_1,x_2\n")
    paths["garbage"].write_bytes(b"garbage, not an array")
    np.savez(root / "whole.npz", x=np.ones((3, 3), np.float32))
    whole = (root / "whole.npz").read_bytes()
    paths["truncated_npz"].write_bytes(whole[: len(whole) // 2])
    paths["pickle"].write_bytes(pickle.dumps({"not": "a model"}))  # starts with byte 0x80
    paths["dir"].mkdir()
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
        # view: a directory that is not a bundle, a port out of range, no model at all
        (["view", "{dir}", "--no-browser"], "not a bundle"),
        (["view", "{doubler}", "--no-browser", "--port", "0"], "--port must be between"),
        (["view", "", "--no-browser"], "no model given"),
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
    assert not (files["dir"] / "o.onnx").exists()


# --------------------------------------------------------------------------- the Python API
def test_api_raises_the_error_tree(files: dict[str, Path]) -> None:
    import formats.onnx
    from formats.datafiles import read_sample
    from formats.onnx.runtime import Session, SessionOptions

    with pytest.raises(InputError, match="it is empty"):
        read_sample(files["empty"])
    with pytest.raises(InputError, match="is a directory"):
        read_sample(files["dir"])
    with pytest.raises(UsageError, match="out of range"):
        formats.onnx.convert(files["doubler"], opset=0)
    with pytest.raises(UsageError, match="--atol and --rtol"):
        formats.onnx.verify(files["doubler"], atol=float("nan"))
    with pytest.raises(UsageError, match="thread counts"):  # not wrapped as a load error
        Session(files["doubler"], SessionOptions(intra_op_threads=-1))
    session = Session(files["doubler"])
    with pytest.raises(InputError, match="not a numpy array"):
        session.run_checked({"x": [[1.0, 2.0, 3.0]]})  # type: ignore[dict-item]
    result = formats.onnx.convert(files["doubler"], sample=np.ones((2, 3), np.float32))
    with pytest.raises(UsageError, match="is a directory"):
        result.save(files["dir"])
    with pytest.raises(ModelportError, match="not a LightGBM text model"):
        formats.onnx.convert(files["doubler"], framework="lightgbm", sample=np.ones((2, 3)))


def test_torch_opset_the_dynamo_exporter_cannot_make_is_not_ignored() -> None:
    """torch.onnx's dynamo exporter keeps opset 18 when asked for 12, without raising."""
    torch = pytest.importorskip("torch")
    import formats.onnx
    from formats.errors import ConversionError

    sample = np.ones((2, 3), np.float32)
    with pytest.raises(ConversionError, match="not the requested opset 12"):
        formats.onnx.convert(torch.nn.Linear(3, 2), sample=sample, opset=12, exporter="dynamo")
