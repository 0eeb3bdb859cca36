"""``modelport predict``: every file format in and out, streamed in chunks, equal to one ORT run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from modelport.cli import cli
from modelport.errors import InputError, NotFoundError, UsageError
from modelport.predict import predict
from modelport.repository import Repository
from tests import onnx_models

ROWS = 50
CHUNK = 7  # several chunks, the last one partial


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_models.save(onnx_models.mlp(), tmp_path_factory.mktemp("m") / "mlp.onnx")


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((ROWS, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def expected(mlp_file: Path, features: np.ndarray) -> dict[str, np.ndarray]:
    """One plain ONNX Runtime run over all rows: what chunked scoring must reproduce."""
    session = ort.InferenceSession(str(mlp_file), providers=["CPUExecutionProvider"])
    logits, label = session.run(["logits", "label"], {"x": features})
    return {"logits": logits, "label": label}


def _table(features: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(features, columns=["f0", "f1", "f2", "f3"])


def _write_input(kind: str, directory: Path, features: np.ndarray) -> Path:
    path = directory / f"in.{kind}"
    if kind == "npy":
        np.save(path, features)
    elif kind == "npz":
        np.savez(path, x=features)
    elif kind == "csv":
        _table(features).to_csv(path, index=False)
    elif kind == "parquet":
        # several row groups, so iter_batches really yields several pieces
        _table(features).to_parquet(path, index=False, row_group_size=20)
    elif kind == "json":
        path.write_text(json.dumps({"x": features.tolist()}))
    elif kind == "jsonl":
        _table(features).to_json(path, orient="records", lines=True)
    return path


def _read_output(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix
    if suffix == ".npz":
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    if suffix == ".json":
        return {k: np.asarray(v) for k, v in json.loads(path.read_text()).items()}
    if suffix == ".csv":
        frame = pd.read_csv(path)
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_json(path, lines=True)
    logits = frame[["logits_0", "logits_1", "logits_2"]].to_numpy(np.float32)
    return {"logits": logits, "label": frame["label"].to_numpy()}


@pytest.mark.parametrize(
    ("kind", "out"),
    [
        ("npy", "npz"),
        ("npz", "npz"),
        ("csv", "csv"),
        ("parquet", "parquet"),
        ("json", "json"),
        ("jsonl", "jsonl"),
    ],
)
def test_round_trip_in_chunks_equals_one_run(
    tmp_path: Path,
    mlp_file: Path,
    features: np.ndarray,
    expected: dict[str, np.ndarray],
    kind: str,
    out: str,
) -> None:
    source = _write_input(kind, tmp_path, features)
    target = tmp_path / f"out.{out}"
    summary = predict(mlp_file, source, target, batch_size=CHUNK, progress=False)

    assert summary.rows == ROWS
    assert summary.chunks >= 3  # really streamed (parquet: row groups cap the piece size)
    got = _read_output(target)
    assert set(got) == {"logits", "label"}
    np.testing.assert_array_equal(got["label"], expected["label"])
    if out in ("npz",):  # binary: bit-identical to the single run
        np.testing.assert_array_equal(got["logits"], expected["logits"])
    else:  # text formats round-trip float32 through their shortest decimal form
        np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-6, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, target.name])


def test_npy_output_of_one_selected_output(
    tmp_path: Path, mlp_file: Path, features: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    source = _write_input("npy", tmp_path, features)
    predict(mlp_file, source, tmp_path / "logits.npy", batch_size=CHUNK, output_names=["logits"],
            progress=False)  # fmt: skip
    got = np.load(tmp_path / "logits.npy")
    assert got.dtype == np.float32 and got.shape == (ROWS, 3)
    np.testing.assert_array_equal(got, expected["logits"])


def test_npy_output_needs_one_output(tmp_path: Path, mlp_file: Path, features: np.ndarray) -> None:
    source = _write_input("npy", tmp_path, features)
    with pytest.raises(UsageError, match=r"\.npz.*--output-name"):
        predict(mlp_file, source, tmp_path / "out.npy", progress=False)
    assert not (tmp_path / "out.npy").exists()


def test_named_columns_of_a_multi_value_input(
    tmp_path: Path, mlp_file: Path, features: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    """Columns x_0..x_3 feed input x in index order, whatever order the file has them in."""
    frame = pd.DataFrame(features, columns=["x_0", "x_1", "x_2", "x_3"])
    frame.insert(0, "id", np.arange(ROWS))
    frame[["x_3", "id", "x_1", "x_0", "x_2"]].to_csv(tmp_path / "in.csv", index=False)
    summary = predict(mlp_file, tmp_path / "in.csv", tmp_path / "out.npz", progress=False)
    np.testing.assert_allclose(_read_output(tmp_path / "out.npz")["logits"], expected["logits"],
                               rtol=1e-6, atol=1e-6)  # fmt: skip
    assert any("'id'" in note for note in summary.notes)


def test_column_count_mismatch_names_the_columns(
    tmp_path: Path, mlp_file: Path, features: np.ndarray
) -> None:
    pd.DataFrame(features[:, :3], columns=["a", "b", "c"]).assign(name="z").to_csv(
        tmp_path / "in.csv", index=False
    )
    with pytest.raises(InputError) as info:
        predict(mlp_file, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)
    message = str(info.value)
    assert "takes 4 value(s) per row" in message
    assert "['a', 'b', 'c']" in message and "'name'" in message
    assert "\n" not in message
    assert not (tmp_path / "out.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.csv"]  # no temporary file left


def test_indexed_columns_report_missing_and_extra(
    tmp_path: Path, mlp_file: Path, features: np.ndarray
) -> None:
    frame = pd.DataFrame(features, columns=["x_0", "x_1", "x_2", "x_5"])
    frame.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(InputError, match=r"missing: \['x_3'\]; extra columns: \['x_5'\]"):
        predict(mlp_file, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)


def _per_column_model() -> onnx.ModelProto:
    """Named per-column inputs like a converted ColumnTransformer: out = 2a + b + float(c)."""
    inputs = [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 1]),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 1]),
        helper.make_tensor_value_info("c", TensorProto.INT64, ["N", 1]),
    ]
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [
        helper.make_node("Mul", ["a", "two"], ["a2"]),
        helper.make_node("Add", ["a2", "b"], ["ab"]),
        helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["ab", "cf"], ["out"]),
    ]
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1])
    graph = helper.make_graph(nodes, "percol", inputs, [out], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_a_column_per_named_input(tmp_path: Path, kind: str) -> None:
    model = onnx_models.save(_per_column_model(), tmp_path / "percol.onnx")
    frame = pd.DataFrame(
        {"c": np.arange(10), "b": np.linspace(0, 1, 10), "a": np.arange(10) * 0.5, "y": 1}
    )
    source = tmp_path / f"in.{kind}"
    if kind == "csv":
        frame.to_csv(source, index=False)
    elif kind == "parquet":
        frame.to_parquet(source, index=False)
    else:
        frame.to_json(source, orient="records", lines=True)
    summary = predict(model, source, tmp_path / "out.csv", batch_size=4, progress=False)
    got = pd.read_csv(tmp_path / "out.csv")["out"].to_numpy()
    want = 2 * frame["a"] + frame["b"] + frame["c"]
    np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-6)
    assert summary.chunks == 3
    assert any("'y'" in note for note in summary.notes)  # unused column is reported


def test_missing_named_input_column(tmp_path: Path) -> None:
    model = onnx_models.save(_per_column_model(), tmp_path / "percol.onnx")
    pd.DataFrame({"a": [1.0], "b": [2.0], "cc": [3]}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(InputError, match=r"no column for input\(s\) \['c'\].*\['cc'\]"):
        predict(model, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)


def test_repository_reference_and_cli(
    tmp_path: Path, features: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    repo = Repository(tmp_path / "repo")
    repo.register(onnx_models.mlp(), "digits", sample={"x": features[:2]})
    source = _write_input("npy", tmp_path, features)
    result = CliRunner().invoke(
        cli,
        ["predict", "digits:1", "--repo", str(tmp_path / "repo"), "-i", str(source),
         "-o", str(tmp_path / "out.parquet"), "--batch-size", "16", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"scored {ROWS} rows with digits:1" in result.output
    got = _read_output(tmp_path / "out.parquet")
    np.testing.assert_array_equal(got["logits"], expected["logits"])  # parquet keeps float32


def test_cli_bad_inputs_are_one_line_errors(tmp_path: Path, mlp_file: Path) -> None:
    runner = CliRunner()
    cases = [
        (["predict", str(mlp_file), "-i", str(tmp_path / "nope.csv"), "-o", "o.csv"], "does not"),
        (["predict", str(mlp_file), "-i", str(mlp_file), "-o", "o.csv"], "unsupported input"),
        (["predict", "ghost", "--repo", str(tmp_path / "r"), "-i", str(mlp_file), "-o", "o.csv"],
         "unsupported input"),
        (["predict", str(tmp_path / "missing.onnx"), "-i", "in.npy", "-o", "o.csv"], "does not"),
    ]  # fmt: skip
    for args, text in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and text in result.output
        assert result.output.count("\n") == 1


def test_unknown_reference(tmp_path: Path, features: np.ndarray) -> None:
    source = _write_input("npy", tmp_path, features)
    with pytest.raises(NotFoundError):
        predict("ghost", source, tmp_path / "o.npz", repo=tmp_path / "repo", progress=False)


def test_wrong_dtype_strings_into_float_input(tmp_path: Path, mlp_file: Path) -> None:
    pd.DataFrame({"x_0": ["a"], "x_1": [1.0], "x_2": [1.0], "x_3": [1.0]}).to_csv(
        tmp_path / "in.csv", index=False
    )
    with pytest.raises(InputError, match="as float32 for input 'x'"):
        predict(mlp_file, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_server_scoring_equals_local(
    tmp_path: Path, features: np.ndarray, expected: dict[str, np.ndarray]
) -> None:
    """--server sends the chunks to a real 'modelport serve'; the file written is the same."""
    import re
    import subprocess
    import sys
    import time
    import urllib.request

    repo = Repository(tmp_path / "repo")
    repo.register(onnx_models.mlp(), "digits", sample={"x": features[:2]})
    repo.close()
    process = subprocess.Popen(
        [sys.executable, "-c", "from modelport.cli import main; main()", "serve",
         "--repo", str(tmp_path / "repo"), "--port", "0", "--intra-op-threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        match = re.search(r"http://127\.0\.0\.1:\d+", process.stderr.readline())
        assert match
        url = match.group(0)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        source = _write_input("csv", tmp_path, features)
        summary = predict("digits", source, tmp_path / "remote.npz", server=url,
                          batch_size=CHUNK, progress=False)  # fmt: skip
        assert summary.rows == ROWS and summary.chunks == -(-ROWS // CHUNK)
        got = _read_output(tmp_path / "remote.npz")
        np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got["label"], expected["label"])
        with pytest.raises(NotFoundError):
            predict("ghost", source, tmp_path / "x.npz", server=url, progress=False)
        assert not (tmp_path / "x.npz").exists()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_output_gets_the_usual_permissions(
    tmp_path: Path, mlp_file: Path, features: np.ndarray
) -> None:
    import os

    mask = os.umask(0o022)
    try:
        source = _write_input("npy", tmp_path, features)
        predict(mlp_file, source, tmp_path / "out.csv", progress=False)
        assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    finally:
        os.umask(mask)
