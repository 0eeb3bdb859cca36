"""``modelport bench``: measurements, JSON, table, chart, and the original framework beside ORT."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from modelport.benchmark import BenchmarkResult, benchmark, synthesize_feed, tile_feed
from modelport.cli import cli
from modelport.errors import UsageError
from modelport.repository import Repository
from modelport.signature import Signature
from tests import onnx_models

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_models.save(onnx_models.mlp(), tmp_path_factory.mktemp("m") / "mlp.onnx")


def test_measurements_at_each_batch_size_and_thread_count(mlp_file: Path) -> None:
    result = benchmark(mlp_file, batch_sizes=[1, 4], threads=[1, 2], iterations=6, warmup=1)
    assert isinstance(result, BenchmarkResult)
    assert [(m.batch_size, m.threads) for m in result.measurements] == [
        (1, 1), (4, 1), (1, 2), (4, 2)
    ]  # fmt: skip
    for m in result.measurements:
        assert m.engine == "onnxruntime" and m.iterations == 6
        assert 0 < m.p50_ms <= m.p90_ms <= m.p99_ms
        assert m.rows_per_s == pytest.approx(m.batch_size * 1000 / m.mean_ms, rel=1e-6)
    data = result.to_dict()
    assert set(data) >= {"model", "measurements", "settings", "environment", "speedups"}
    assert data["environment"]["onnxruntime"]
    assert data["settings"]["batch_sizes"] == [1, 4]
    assert any("synthesized" in note for note in result.notes)  # a plain file has no example
    json.dumps(data)  # serializable as is


def test_duration_bounds_the_run(mlp_file: Path) -> None:
    result = benchmark(mlp_file, batch_sizes=[2], duration=0.05, warmup=0)
    (m,) = result.measurements
    assert m.iterations >= 5  # the minimum, even when the duration is tiny
    assert m.iterations * m.mean_ms / 1000 < 2.0


def test_inputs_come_from_the_version_example(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    example = np.arange(12, dtype=np.float32).reshape(3, 4)
    repo.register(onnx_models.mlp(), "mlp", sample={"x": example})
    result = benchmark("mlp", repo=tmp_path / "repo", batch_sizes=[5], iterations=2, warmup=0)
    assert result.model == "mlp:1"
    assert not any("synthesized" in note for note in result.notes)
    tiled = tile_feed({"x": example}, 5)["x"]
    np.testing.assert_array_equal(tiled, example[[0, 1, 2, 0, 1]])


def test_synthesized_inputs_fit_the_signature() -> None:
    signature = Signature.from_onnx(onnx_models.mlp())
    feed, _ = synthesize_feed(signature, rows=3)
    signature.check_feed(feed)
    assert feed["x"].shape == (3, 4)


def test_bad_settings(mlp_file: Path) -> None:
    with pytest.raises(UsageError, match="batch size"):
        benchmark(mlp_file, batch_sizes=[0], iterations=1)
    with pytest.raises(UsageError, match="iterations"):
        benchmark(mlp_file, iterations=0)


def test_native_sklearn_against_onnx_with_json_and_plot(tmp_path: Path) -> None:
    """The CLI end to end: a real scikit-learn model, its modelport conversion, both timed."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from modelport.convert import convert

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    estimator = LogisticRegression(max_iter=300).fit(x, y)
    result = convert(estimator, x[:8], verify=False)  # parity is test_convert's business
    result.save(tmp_path / "iris.onnx")
    (tmp_path / "iris.pkl").write_bytes(pickle.dumps(estimator))

    out = CliRunner().invoke(
        cli,
        ["bench", str(tmp_path / "iris.onnx"), "--native", str(tmp_path / "iris.pkl"),
         "--batch-sizes", "1,8", "--iterations", "5", "--warmup", "1",
         "--json", str(tmp_path / "bench.json"), "--plot", str(tmp_path / "bench.png")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "p50 ms" in out.output and "speedup: sklearn p50 / onnxruntime p50" in out.output
    data = json.loads((tmp_path / "bench.json").read_text())
    engines = {(m["engine"], m["batch_size"]) for m in data["measurements"]}
    assert engines == {("onnxruntime", 1), ("onnxruntime", 8), ("sklearn", 1), ("sklearn", 8)}
    assert [s["batch_size"] for s in data["speedups"]] == [1, 8]
    assert all(s["speedup_p50"] > 0 for s in data["speedups"])
    assert data["environment"]["sklearn"]
    assert (tmp_path / "bench.png").read_bytes()[:8] == PNG_MAGIC


def test_cli_errors(tmp_path: Path, mlp_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", str(mlp_file), "--plot", str(tmp_path / "x.svg")])
    assert result.exit_code == 2 and ".png" in result.output
    result = runner.invoke(cli, ["bench", "ghost", "--repo", str(tmp_path / "r")])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    result = runner.invoke(cli, ["bench", str(mlp_file), "--batch-sizes", "1,x"])
    assert result.exit_code == 2 and "comma-separated integers" in result.output
