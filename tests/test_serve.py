"""Open Inference Protocol conformance through the official Triton HTTP client, the V1 route,
metadata, metrics and the remote client, against a real uvicorn server and real repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelport.repository import Repository
from modelport.runtime import Session
from tests.test_serve_support import (
    DTYPES,
    V2_NAMES,
    Server,
    identity_model,
    mlp_model,
    mlp_reference,
    register,
    sample,
    serving,
    two_input_model,
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = Repository(tmp_path_factory.mktemp("serve") / "repo")
    register(repo, mlp_model(0), "mlp")
    register(repo, mlp_model(1), "mlp")  # version 2: the latest
    repo.set_alias("mlp", "production", 1)
    register(repo, identity_model(), "types")
    register(repo, two_input_model(), "pair")
    return repo


@pytest.fixture(scope="module")
def server(repo: Repository) -> Iterator[Server]:
    with serving(repo) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield client
    client.close()


def _x(rows: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 4)).astype(np.float32)


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "modelport"
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])


def test_model_metadata_versions_aliases(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("mlp")
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["versions"] == ["1", "2"]
    assert meta["version"] == "2"  # latest
    assert meta["aliases"] == {"production": "1"}
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    assert client.get_model_metadata("mlp", "production")["version"] == "1"
    assert client.get_model_metadata("mlp@production")["version"] == "1"
    assert client.get_model_metadata("mlp", "1")["version"] == "1"
    assert client.is_model_ready("mlp")
    assert client.is_model_ready("mlp", "2")
    assert not client.is_model_ready("nosuch")


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_infer_mlp(
    client: triton.InferenceServerClient, binary_in: bool, binary_out: bool
) -> None:
    x = _x()
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary_out) for n in ("scores", "label")]
    result = client.infer("mlp", [inp], outputs=outputs, request_id="req-7")
    scores = result.as_numpy("scores")
    np.testing.assert_allclose(scores, mlp_reference(x, seed=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("label"), scores.argmax(axis=1))
    response = result.get_response()
    assert response["model_name"] == "mlp" and response["model_version"] == "2"
    assert response["id"] == "req-7"
    binary_flags = ["binary_data_size" in (o.get("parameters") or {}) for o in response["outputs"]]
    assert binary_flags == [binary_out, binary_out]


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True])
def test_compressed_requests(
    client: triton.InferenceServerClient, compression: str, binary: bool
) -> None:
    x = _x(seed=3)
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    result = client.infer("mlp", [inp], request_compression_algorithm=compression,
                          response_compression_algorithm=compression)
    np.testing.assert_allclose(result.as_numpy("scores"), mlp_reference(x, seed=1), rtol=1e-5,
                               atol=1e-6)


def test_infer_by_version_and_alias(client: triton.InferenceServerClient) -> None:
    x = _x(2)
    inp = triton.InferInput("x", [2, 4], "FP32")
    inp.set_data_from_numpy(x)
    for model, version, seed in [("mlp", "1", 0), ("mlp", "production", 0), ("mlp@production", "", 0),
                                 ("mlp:2", "", 1), ("mlp", "", 1)]:
        result = client.infer(model, [inp], model_version=version)
        np.testing.assert_allclose(result.as_numpy("scores"), mlp_reference(x, seed), rtol=1e-5)


@pytest.mark.parametrize("binary", [False, True])
def test_every_datatype(client: triton.InferenceServerClient, binary: bool) -> None:
    inputs, sent = [], {}
    for dtype, _ in DTYPES:
        array = sample(dtype, rows=3, seed=len(dtype))
        sent[dtype] = array
        inp = triton.InferInput(f"x_{dtype}", [3, 2], V2_NAMES[dtype])
        inp.set_data_from_numpy(array, binary_data=binary)
        inputs.append(inp)
    outputs = [triton.InferRequestedOutput(f"y_{d}", binary_data=binary) for d, _ in DTYPES]
    result = client.infer("types", inputs, outputs=outputs)
    for dtype, _ in DTYPES:
        got = result.as_numpy(f"y_{dtype}")
        assert result.get_output(f"y_{dtype}")["datatype"] == V2_NAMES[dtype]
        assert got.shape == (3, 2)
        if dtype == "str":
            texts = [x.decode() if isinstance(x, bytes) else x for x in got.ravel()]
            assert texts == list(sent[dtype].ravel())
        else:
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, sent[dtype])


def test_binary_outputs_by_default_when_none_requested(
    client: triton.InferenceServerClient,
) -> None:
    # tritonclient asks for binary_data_output when no outputs are named
    inp = triton.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(_x(1))
    result = client.infer("mlp", [inp])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["scores", "label"]
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])


def test_output_selection(client: triton.InferenceServerClient) -> None:
    x = _x(4)
    inp = triton.InferInput("x", [4, 4], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("mlp", [inp], outputs=[triton.InferRequestedOutput("label")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("scores") is None
    np.testing.assert_array_equal(result.as_numpy("label"), mlp_reference(x, 1).argmax(axis=1))


def test_nested_and_flat_json_data(server: Server) -> None:
    x = _x(2)
    for data in (x.tolist(), x.ravel().tolist()):
        body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": data}],
                "outputs": [{"name": "scores"}]}
        response = httpx.post(f"{server.url}/v2/models/mlp/infer", json=body)
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        assert out["shape"] == [2, 3] and "parameters" not in out
        np.testing.assert_allclose(np.array(out["data"]).reshape(2, 3), mlp_reference(x, 1),
                                   rtol=1e-5)


def test_errors_raise_with_message(client: triton.InferenceServerClient) -> None:
    inp = triton.InferInput("x", [2, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((2, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"input 'x' has shape \[2, 3\]") as info:
        client.infer("mlp", [inp])
    assert info.value.status() == "400"
    with pytest.raises(InferenceServerException, match="nosuch") as info:
        client.get_model_metadata("nosuch")
    assert info.value.status() == "404"
    wrong = triton.InferInput("x", [1, 4], "FP64")
    wrong.set_data_from_numpy(np.zeros((1, 4), np.float64))
    with pytest.raises(InferenceServerException, match="datatype 'FP64', expected 'FP32'"):
        client.infer("mlp", [wrong])
    with pytest.raises(InferenceServerException, match="no version 9"):
        client.infer("mlp", [wrong], model_version="9")
    with pytest.raises(InferenceServerException, match="unknown output 'nope'"):
        ok = triton.InferInput("x", [1, 4], "FP32").set_data_from_numpy(_x(1))
        client.infer("mlp", [ok], outputs=[triton.InferRequestedOutput("nope")])


def test_v1_instances_inputs_data(server: Server) -> None:
    x = _x(3)
    url = f"{server.url}/v1/models/mlp:predict"
    expected = mlp_reference(x, 1)
    rows = httpx.post(url, json={"instances": x.tolist()}).json()["predictions"]
    assert [row["label"] for row in rows] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose([row["scores"] for row in rows], expected, rtol=1e-5)
    cols = httpx.post(url, json={"inputs": {"x": x.tolist()}}).json()["predictions"]
    np.testing.assert_allclose(cols["scores"], expected, rtol=1e-5)
    data = httpx.post(url, json={"data": x.tolist()}).json()
    np.testing.assert_allclose(data["result"]["scores"], expected, rtol=1e-5)
    one_row = httpx.post(url, json={"data": x[0].tolist()}).json()["result"]
    assert one_row["label"] == [int(expected[0].argmax())]
    old = httpx.post(f"{server.url}/v1/models/mlp@production:predict", json={"data": x.tolist()})
    np.testing.assert_allclose(old.json()["result"]["scores"], mlp_reference(x, 0), rtol=1e-5)


def test_v1_multi_input(server: Server) -> None:
    url = f"{server.url}/v1/models/pair:predict"
    body = {"instances": [{"a": [1, 2], "b": [3, 4]}, {"a": [0.5, 0], "b": [2, 2]}]}
    rows = httpx.post(url, json=body).json()["predictions"]
    assert rows == [{"sum": [4.0, 6.0], "prod": [3.0, 8.0]}, {"sum": [2.5, 2.0], "prod": [1.0, 0.0]}]
    cols = httpx.post(url, json={"inputs": {"a": [[1, 1]], "b": [[2, 3]]}}).json()["predictions"]
    assert cols == {"sum": [[3.0, 4.0]], "prod": [[2.0, 3.0]]}
    bad = httpx.post(url, json={"instances": [[1, 2]]})
    assert bad.status_code == 400 and "give each instance as an object" in bad.json()["error"]
    missing = httpx.post(url, json={"inputs": {"a": [[1, 1]]}})
    assert missing.status_code == 400 and "'b'" in missing.json()["error"]


def test_v1_strings(server: Server) -> None:
    body = {"inputs": {f"x_{d}": sample(d, 1).tolist() if d != "float16" else [[0.5, 1.5]]
                       for d, _ in DTYPES}}
    response = httpx.post(f"{server.url}/v1/models/types:predict", json=body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert predictions["y_str"] == body["inputs"]["x_str"]
    assert predictions["y_float16"] == [[0.5, 1.5]]
    assert predictions["y_bool"] == body["inputs"]["x_bool"]


def test_remote_predict_matches_local_session(server: Server, repo: Repository) -> None:
    from modelport.serve import remote_predict

    feed = {f"x_{d}": sample(d, 4, seed=3) for d, _ in DTYPES}
    local = Session(repo.resolve("types").model_path).run(feed)
    remote = remote_predict(server.url, "types", feed)
    assert list(remote) == list(local)
    for name, value in local.items():
        assert remote[name].dtype == value.dtype and remote[name].shape == value.shape
        np.testing.assert_array_equal(remote[name], value)
    x = {"x": _x(3)}
    np.testing.assert_array_equal(
        remote_predict(server.url, "mlp@production", x, ["scores"])["scores"],
        Session(repo.resolve("mlp:1").model_path).run(x)["scores"],
    )
    from modelport.errors import InputError, NotFoundError, UsageError

    with pytest.raises(NotFoundError, match="nosuch"):
        remote_predict(server.url, "nosuch", x)
    with pytest.raises(InputError, match="missing input"):
        remote_predict(server.url, "pair", {"a": np.zeros((1, 2), np.float32)})
    with pytest.raises(UsageError, match="cannot reach"):
        remote_predict("http://127.0.0.1:9", "mlp", x, timeout=2)


def test_metrics_openapi_docs(server: Server, client: triton.InferenceServerClient) -> None:
    inp = triton.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(_x(1))
    client.infer("mlp", [inp])
    text = httpx.get(f"{server.url}/metrics").text
    for series in ("modelport_request_success_total", "modelport_request_failure_total",
                   "modelport_request_duration_seconds_bucket", "modelport_queue_duration_seconds",
                   "modelport_compute_duration_seconds", "modelport_batch_size_bucket"):
        assert series in text
    assert 'modelport_request_success_total{model="mlp",version="2"}' in text
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/v2/models/{model}/infer" in spec["paths"]
    assert "swagger" in httpx.get(f"{server.url}/docs").text.lower()


def test_unknown_endpoint_is_json_404(server: Server) -> None:
    response = httpx.get(f"{server.url}/v3/nothing")
    assert response.status_code == 404 and "no such endpoint" in response.json()["error"]
    response = httpx.get(f"{server.url}/v2/models/mlp/infer")
    assert response.status_code == 405 and "error" in response.json()


def test_refs_limit_what_is_served(repo: Repository, tmp_path: Path) -> None:
    with serving(repo, ["mlp@production"]) as srv:
        client = triton.InferenceServerClient(f"127.0.0.1:{srv.port}")
        assert client.get_model_metadata("mlp")["version"] == "1"  # follows the served alias
        with pytest.raises(InferenceServerException, match="not served here") as info:
            client.get_model_metadata("types")
        assert info.value.status() == "404"
        index = client.get_model_repository_index()
        assert [(e["name"], e.get("version"), e["state"]) for e in index] == [
            ("mlp", "1", "READY")
        ]
        client.close()
