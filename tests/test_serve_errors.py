"""A corpus of malformed requests: each gets a 4xx with {"error": ...} naming the problem, and
the server keeps serving. Also auth (401) and the body size limit (413)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelport.repository import Repository
from tests.test_serve_support import Server, identity_model, mlp_model, register, serving

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = Repository(tmp_path_factory.mktemp("serve-errors") / "repo")
    register(repo, mlp_model(0), "mlp")
    register(repo, identity_model(), "types")
    return repo


@pytest.fixture(scope="module")
def server(repo: Repository) -> Iterator[Server]:
    with serving(repo) as srv:
        yield srv


def _req(data: object = None, shape: object = (1, 4), datatype: object = "FP32",
         name: object = "x", **extra: object) -> bytes:
    entry: dict[str, object] = {"name": name, "shape": list(shape) if isinstance(shape, tuple)
                                else shape, "datatype": datatype}
    if data is not None:
        entry["data"] = data
    entry.update(extra)
    return json.dumps({"inputs": [entry]}).encode()


def _binary(header: dict[str, object], payload: bytes, claimed: int | None = None) -> tuple[
        bytes, dict[str, str]]:
    raw = json.dumps(header).encode()
    return raw + payload, {"Inference-Header-Content-Length": str(
        len(raw) if claimed is None else claimed)}


FOUR = [1.0, 2.0, 3.0, 4.0]
_bin_header = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                           "parameters": {"binary_data_size": 16}}]}

# (id, path, body, headers, status, text the error must contain)
CORPUS: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("bad-json", "mlp", b"{not json", {}, 400, "not valid JSON"),
    ("empty-body", "mlp", b"", {}, 400, "not valid JSON"),
    ("json-array", "mlp", b"[1, 2]", {}, 400, "'inputs'"),
    ("no-inputs", "mlp", b'{"inputs": []}', {}, 400, "non-empty 'inputs'"),
    ("input-not-object", "mlp", b'{"inputs": [3]}', {}, 400, "object with a 'name'"),
    ("unknown-input", "mlp", _req(FOUR, name="y"), {}, 400, "unknown input 'y'"),
    ("wrong-shape", "mlp", _req([1.0, 2.0, 3.0], shape=(1, 3)), {}, 400, "input 'x' has shape"),
    ("count-mismatch", "mlp", _req([1.0, 2.0]), {}, 400, "input 'x' has 2 values"),
    ("wrong-dtype", "mlp", _req(FOUR, datatype="INT64"), {}, 400, "datatype 'INT64'"),
    ("unknown-datatype", "mlp", _req(FOUR, datatype="FP8"), {}, 400, "datatype 'FP8'"),
    ("negative-shape", "mlp", _req(FOUR, shape=[-1, 4]), {}, 400, "'shape' list"),
    ("shape-not-list", "mlp", _req(FOUR, shape="1,4"), {}, 400, "'shape' list"),
    ("non-numeric", "mlp", _req(["a", "b", "c", "d"]), {}, 400, "needs FP32 data"),
    ("nested-objects", "mlp", _req([{"a": 1}] * 4), {}, 400, "needs FP32 data"),
    ("ragged", "mlp", _req([[1.0, 2.0], [3.0]]), {}, 400, "needs FP32 data"),
    ("no-data", "mlp", _req(), {}, 400, "neither 'data' nor binary_data_size"),
    ("missing-input", "types", _req([[True, False]], shape=(1, 2), datatype="BOOL",
                                    name="x_bool"), {}, 400, "missing input"),
    ("int-fraction", "types", json.dumps({"inputs": [{"name": "x_int32", "shape": [1, 2],
                                                      "datatype": "INT32", "data": [1.5, 2]}]}
                                         ).encode(), {}, 400, "whole numbers"),
    ("uint8-overflow", "types", json.dumps({"inputs": [{"name": "x_uint8", "shape": [1, 2],
                                                        "datatype": "UINT8", "data": [300, 2]}]}
                                           ).encode(), {}, 400, "outside the UINT8 range"),
    # 2**63 and 2**64 as JSON floats: the largest INT64/UINT64 round up to them as floats
    ("int64-float-overflow", "types", json.dumps({"inputs": [{
        "name": "x_int64", "shape": [1, 2], "datatype": "INT64",
        "data": [9.223372036854776e18, 0]}]}).encode(), {}, 400, "outside the INT64 range"),
    ("uint64-float-overflow", "types", json.dumps({"inputs": [{
        "name": "x_uint64", "shape": [1, 2], "datatype": "UINT64",
        "data": [1.8446744073709552e19, 0]}]}).encode(), {}, 400, "outside the UINT64 range"),
    ("bytes-not-strings", "types", json.dumps({"inputs": [{"name": "x_str", "shape": [1, 2],
                                                           "datatype": "BYTES", "data": [1, 2]}]}
                                              ).encode(), {}, 400, "string data"),
    ("duplicate-input", "mlp", json.dumps({"inputs": [json.loads(_req(FOUR))["inputs"][0]] * 2}
                                          ).encode(), {}, 400, "given twice"),
    ("unknown-output", "mlp", json.dumps({**json.loads(_req(FOUR)), "outputs": [{"name": "z"}]}
                                         ).encode(), {}, 400, "unknown output 'z'"),
    ("binary-size-too-big", "mlp", *_binary(_bin_header, b"\0" * 12), 400, "only 12 remain"),
    ("binary-size-too-small", "mlp", *_binary(_bin_header, b"\0" * 20), 400,
     "4 bytes of binary data beyond"),
    ("binary-size-lies-about-shape", "mlp",
     *_binary({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                           "parameters": {"binary_data_size": 12}}]}, b"\0" * 12), 400,
     "needs 16"),
    ("header-length-past-body", "mlp", *_binary(_bin_header, b"\0" * 16, claimed=10_000), 400,
     "does not fit"),
    ("header-length-not-number", "mlp", _req(FOUR),
     {"Inference-Header-Content-Length": "abc"}, 400, "not a number"),
    ("header-length-cuts-json", "mlp", *_binary(_bin_header, b"\0" * 16, claimed=20), 400,
     "not valid JSON"),
    ("binary-without-header", "mlp", json.dumps(_bin_header).encode(), {}, 400,
     "no Inference-Header-Content-Length"),
    ("bytes-binary-truncated", "types",
     *_binary({"inputs": [{"name": "x_str", "shape": [1, 2], "datatype": "BYTES",
                           "parameters": {"binary_data_size": 6}}]}, b"\x05\0\0\0ab"), 400,
     "runs past"),
    ("bytes-binary-not-utf8", "types",
     *_binary({"inputs": [{"name": "x_str", "shape": [1, 2], "datatype": "BYTES",
                           "parameters": {"binary_data_size": 11}}]},
              b"\x01\0\0\0a\x02\0\0\0\xff\xfe"), 400, "element 1 is not UTF-8"),
    # a huge shape over a tiny body: refused before allocating room for its elements
    ("bytes-binary-huge-shape", "types",
     *_binary({"inputs": [{"name": "x_str", "shape": [10**11, 2], "datatype": "BYTES",
                           "parameters": {"binary_data_size": 4}}]}, b"\0\0\0\0"), 400,
     "ends before element 1"),
    ("unknown-model", "nosuch", _req(FOUR), {}, 404, "'nosuch' not found"),
    ("unknown-version", "mlp/versions/7", _req(FOUR), {}, 404, "no version 7"),
    ("unknown-alias", "mlp/versions/gold", _req(FOUR), {}, 404, "no alias 'gold'"),
    ("bad-model-name", "bad%20name", _req(FOUR), {}, 400, "invalid model name"),
    ("path-traversal", "..%2Fetc", _req(FOUR), {}, 404, "no such endpoint"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "text"),
                         [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_malformed_request_gets_4xx(server: Server, path: str, body: bytes,
                                    headers: dict[str, str], status: int, text: str) -> None:
    response = httpx.post(f"{server.url}/v2/models/{path}/infer", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert text in response.json()["error"]


def test_v1_malformed(server: Server) -> None:
    url = f"{server.url}/v1/models/mlp:predict"
    for body, text in [
        (b"nope", "not valid JSON"),
        (b'{"rows": [[1,2,3,4]]}', 'exactly one of "instances"'),
        (b'{"instances": []}', "non-empty list"),
        (b'{"instances": [[1,2,3]]}', "input 'x' has shape"),
        (b'{"instances": [["a","b","c","d"]]}', "needs FP32 data"),
        (b'{"instances": [{"y": [1,2,3,4]}]}', "lacks input 'x'"),
    ]:
        response = httpx.post(url, content=body)
        assert response.status_code == 400, body
        assert text in response.json()["error"], response.text
    assert httpx.post(f"{server.url}/v1/models/mlp:explain", json={}).status_code == 404


def test_server_still_serves_after_the_corpus(server: Server) -> None:
    for _, path, body, headers, _, _ in CORPUS:
        httpx.post(f"{server.url}/v2/models/{path}/infer", content=body, headers=headers)
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    inp = triton.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(np.ones((1, 4), np.float32))
    assert client.infer("mlp", [inp]).as_numpy("scores").shape == (1, 3)
    assert client.is_server_ready()
    metrics = httpx.get(f"{server.url}/metrics").text
    failures = [line for line in metrics.splitlines()
                if line.startswith('modelport_request_failure_total{model="mlp"')]
    assert failures and float(failures[0].split()[-1]) >= 20
    client.close()


def test_auth(repo: Repository) -> None:
    with serving(repo, auth_token=TOKEN) as srv:
        assert httpx.get(f"{srv.url}/v2/health/live").status_code == 200  # health is open
        assert httpx.get(f"{srv.url}/v2/health/ready").status_code == 200
        for method, path in [("GET", "/v2"), ("GET", "/v2/models/mlp"), ("GET", "/metrics"),
                             ("POST", "/v2/models/mlp/infer"), ("POST", "/v2/repository/index")]:
            response = httpx.request(method, srv.url + path)
            assert response.status_code == 401, path
            assert "bearer token" in response.json()["error"]
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(f"{srv.url}/v2", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong bearer token" in wrong.json()["error"]
        ok = httpx.get(f"{srv.url}/v2", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        client = triton.InferenceServerClient(f"127.0.0.1:{srv.port}")
        with pytest.raises(InferenceServerException, match="missing bearer token"):
            client.get_model_metadata("mlp")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get_model_metadata("mlp", headers=headers)["name"] == "mlp"
        from modelport.errors import UnauthorizedError
        from modelport.serve import remote_predict

        feed = {"x": np.ones((1, 4), np.float32)}
        with pytest.raises(UnauthorizedError):
            remote_predict(srv.url, "mlp", feed)
        assert remote_predict(srv.url, "mlp", feed, token=TOKEN)["scores"].shape == (1, 3)
        client.close()


def test_body_size_limit(repo: Repository) -> None:
    with serving(repo, max_body_bytes=2000) as srv:
        small = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": FOUR}]}
        assert httpx.post(f"{srv.url}/v2/models/mlp/infer", json=small).status_code == 200
        big = {"inputs": [{"name": "x", "shape": [1000, 4], "datatype": "FP32",
                           "data": FOUR * 1000}]}
        response = httpx.post(f"{srv.url}/v2/models/mlp/infer", json=big)
        assert response.status_code == 413
        assert "over the limit of 2000 bytes" in response.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: enforced while reading
            yield json.dumps(big).encode()[:1000]
            yield json.dumps(big).encode()[1000:]

        response = httpx.post(f"{srv.url}/v2/models/mlp/infer", content=chunks())
        assert response.status_code == 413
        # still serving
        assert httpx.post(f"{srv.url}/v2/models/mlp/infer", json=small).status_code == 200


def test_port_in_use_is_a_usage_error() -> None:
    from modelport.errors import UsageError
    from modelport.serve import bind_socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} is in use; choose another with --port"):
            bind_socket("127.0.0.1", port)
