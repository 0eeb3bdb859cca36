"""Dynamic batching (real ONNX Runtime sessions), queue limits, alias switches while serving and
the model repository extension."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from modelport.errors import InferenceError, UnavailableError
from modelport.repository import Repository
from modelport.runtime import Session, SessionOptions
from modelport.serve import DynamicBatcher, ModelConfig
from modelport.serve.metrics import Metrics
from tests.test_serve_support import mlp_model, mlp_reference, register, serving, slow_model


def _graph(nodes: list, inputs: list, outputs: list, inits: list | None = None) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits or []),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def gather_model() -> onnx.ModelProto:
    """idx [N] int64 -> rows of a 10x2 table: an index out of range fails in ONNX Runtime."""
    table = numpy_helper.from_array(np.arange(20, dtype=np.float32).reshape(10, 2), "table")
    return _graph([helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
                  [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [table])


def ragged_model() -> onnx.ModelProto:
    return _graph([helper.make_node("Identity", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])])


def total_model() -> onnx.ModelProto:
    """An output without a batch axis (the sum of everything): rows cannot be split back."""
    return _graph([helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                  [helper.make_tensor_value_info("total", TensorProto.FLOAT, [])])


def _batcher(model: onnx.ModelProto, **config: object) -> DynamicBatcher:
    session = Session(model, SessionOptions(intra_op_threads=1))
    return DynamicBatcher(session, ModelConfig(**config), Metrics().for_model("m", "1"), "m:1")


def test_queued_requests_share_one_run_and_get_their_own_rows() -> None:
    async def main() -> None:
        batcher = _batcher(gather_model())
        assert batcher.batching
        feeds = [np.array([i % 10] * (i % 3 + 1), dtype=np.int64) for i in range(7)]
        futures = [batcher.submit({"idx": f}) for f in feeds]  # queued before the worker runs
        batcher.start()
        results = await asyncio.gather(*futures)
        for feed, result in zip(feeds, results, strict=True):
            np.testing.assert_array_equal(result["y"], np.arange(20).reshape(10, 2)[feed])
        assert batcher.runs == 1 and batcher.max_rows_seen == sum(len(f) for f in feeds)
        batcher.close()
        batcher.join(5)

    asyncio.run(main())


def test_max_batch_size_and_incompatible_shapes() -> None:
    async def main() -> None:
        batcher = _batcher(ragged_model(), max_batch_size=4)
        feeds = [np.ones((2, 3), np.float32), np.ones((2, 3), np.float32) * 2,
                 np.ones((2, 3), np.float32) * 3, np.ones((1, 5), np.float32)]
        futures = [batcher.submit({"x": f}) for f in feeds]
        batcher.start()
        results = await asyncio.gather(*futures)
        for feed, result in zip(feeds, results, strict=True):
            np.testing.assert_array_equal(result["y"], feed)
        # [2+2 rows of width 3], [2 rows of width 3] (batch full), [1 row of width 5]
        assert batcher.runs == 3 and batcher.max_rows_seen == 4
        batcher.close()
        batcher.join(5)

    asyncio.run(main())


def test_a_bad_request_does_not_fail_its_batch() -> None:
    async def main() -> None:
        batcher = _batcher(gather_model())
        good1 = batcher.submit({"idx": np.array([1, 2], np.int64)})
        bad = batcher.submit({"idx": np.array([99], np.int64)})
        good2 = batcher.submit({"idx": np.array([3], np.int64)})
        batcher.start()
        assert (await good1)["y"].tolist() == [[2, 3], [4, 5]]
        assert (await good2)["y"].tolist() == [[6, 7]]
        with pytest.raises(InferenceError, match="ONNX Runtime rejected"):
            await bad
        batcher.close()
        batcher.join(5)

    asyncio.run(main())


def test_output_without_batch_axis_turns_batching_off() -> None:
    async def main() -> None:
        batcher = _batcher(total_model())
        futures = [batcher.submit({"x": np.full((2, 2), i, np.float32)}) for i in range(3)]
        batcher.start()
        results = await asyncio.gather(*futures)
        assert [float(r["total"]) for r in results] == [0.0, 4.0, 8.0]
        assert not batcher.batching
        batcher.close()
        batcher.join(5)

    asyncio.run(main())


def test_bounded_queue_and_drain_on_close() -> None:
    async def main() -> None:
        batcher = _batcher(gather_model(), max_queue_size=2, batching=False)
        assert not batcher.batching
        first = batcher.submit({"idx": np.array([1], np.int64)})
        second = batcher.submit({"idx": np.array([2], np.int64)})
        with pytest.raises(UnavailableError, match="queue is full"):
            batcher.submit({"idx": np.array([3], np.int64)})
        batcher.close()  # queued requests still finish
        batcher.start()
        assert (await first)["y"].tolist() == [[2, 3]]
        assert (await second)["y"].tolist() == [[4, 5]]
        with pytest.raises(UnavailableError, match="unloading"):
            batcher.submit({"idx": np.array([1], np.int64)})
        batcher.join(5)
        assert batcher.runs == 2

    asyncio.run(main())


def test_fast_model_batches_a_loop_turn_on_the_loop() -> None:
    async def main() -> None:
        # A generous threshold: on a loaded shared machine the first run of even this tiny
        # model can take over the default 1 ms, which sent the turn to the worker (flaky).
        batcher = _batcher(gather_model(), inline_max_ms=100.0)
        batcher.run_now({"idx": np.array([0], np.int64)})  # warm-up: a fast model
        batcher.start()
        feeds = [np.array([i % 10, (i + 3) % 10], np.int64) for i in range(12)]
        results = await asyncio.gather(*(batcher.run({"idx": f}) for f in feeds))
        for feed, result in zip(feeds, results, strict=True):
            np.testing.assert_array_equal(result["y"], np.arange(20).reshape(10, 2)[feed])
        assert batcher.loop_runs == 1 and batcher.runs == 1 and batcher.max_rows_seen == 24
        batcher.close()
        batcher.join(5)

    asyncio.run(main())


def test_slow_model_runs_on_its_worker() -> None:
    async def main() -> None:
        batcher = _batcher(slow_model(256), inline_max_ms=0.001)
        batcher.run_now({"x": np.ones((1, 1), np.float32)})
        batcher.start()
        results = await asyncio.gather(
            *(batcher.run({"x": np.full((1, 1), i, np.float32)}) for i in range(5)))
        assert [float(r["y"][0, 0]) for r in results] == [0.0, 2.0, 4.0, 6.0, 8.0]
        assert batcher.loop_runs == 0 and batcher.runs >= 1
        batcher.close()
        batcher.join(5)

    asyncio.run(main())


def test_enqueue_calls_each_caller_back_with_its_rows_after_one_shared_run() -> None:
    async def main() -> None:
        batcher = _batcher(gather_model(), inline_max_ms=100.0)
        batcher.run_now({"idx": np.array([0], np.int64)})
        batcher.start()
        answers: dict[int, np.ndarray] = {}
        done = asyncio.Event()

        def callback(i: int) -> Any:
            def got(value: dict[str, np.ndarray] | None, error: BaseException | None) -> None:
                assert error is None and value is not None
                answers[i] = value["y"]
                if len(answers) == 7:
                    done.set()
            return got

        gone = {"idx": np.array([9], np.int64)}  # its client left: never run, never answered
        batcher.enqueue(gone, None, lambda v, e: answers.setdefault(-1, v), lambda: True)
        for i in range(7):
            batcher.enqueue({"idx": np.array([i, 6 - i], np.int64)}, None, callback(i))
        assert not answers  # nothing runs inside enqueue: the turn has to end first
        await asyncio.wait_for(done.wait(), 5)
        for i in range(7):
            np.testing.assert_array_equal(answers[i], np.arange(20).reshape(10, 2)[[i, 6 - i]])
        assert -1 not in answers
        assert batcher.loop_runs == 1 and batcher.runs == 1 and batcher.max_rows_seen == 14
        batcher.close()
        batcher.join(5)

    asyncio.run(main())


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    repo = Repository(tmp_path_factory.mktemp("serve-batching") / "repo")
    register(repo, slow_model(512), "slow")
    register(repo, mlp_model(0), "mlp")
    register(repo, mlp_model(1), "mlp")
    repo.set_alias("mlp", "production", 1)
    return repo


def _metric(text: str, name: str, model: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith(name) and f'model="{model}"' in line:
            le = re.search(r'le="([^"]+)"', line)
            found[le.group(1) if le else line.split("{")[0]] = float(line.split()[-1])
    return found


def test_32_concurrent_clients_each_get_exactly_their_rows(repo: Repository) -> None:
    config = ModelConfig(intra_op_threads=1)
    with serving(repo, ["slow"], defaults=config) as srv:
        async def one(client: httpx.AsyncClient, i: int) -> tuple[np.ndarray, dict]:
            rows = i % 3 + 1
            x = (np.arange(rows, dtype=np.float32) + 1000 * i).reshape(rows, 1)
            if i % 2:  # half JSON, half binary
                body = {"inputs": [{"name": "x", "shape": [rows, 1], "datatype": "FP32",
                                    "data": x.ravel().tolist()}]}
                response = await client.post("/v2/models/slow/infer", json=body)
                return x, response.json()
            header = json.dumps({"inputs": [{
                "name": "x", "shape": [rows, 1], "datatype": "FP32",
                "parameters": {"binary_data_size": x.nbytes}}], "outputs": [{"name": "y"}]
            }).encode()
            response = await client.post(
                "/v2/models/slow/infer", content=header + x.tobytes(),
                headers={"Inference-Header-Content-Length": str(len(header))})
            return x, response.json()

        async def main() -> list[tuple[np.ndarray, dict]]:
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=60) as client:
                return await asyncio.gather(*(one(client, i) for i in range(32)))

        for x, answer in asyncio.run(main()):
            out = answer["outputs"][0]
            assert out["shape"] == [len(x), 1]
            np.testing.assert_array_equal(np.array(out["data"], np.float32).reshape(-1, 1), 2 * x)
        assert srv.app.state.service.loaded()[0].batcher.loop_runs == 0  # 22 ms: its worker
        batches = _metric(httpx.get(f"{srv.url}/metrics").text, "modelport_batch_size", "slow")
        runs = batches["modelport_batch_size_count"]
        assert runs < 32  # fewer runs than requests: some were coalesced (warm-up not counted)
        assert batches["1.0"] < runs, "no batch of more than one row was formed"
        assert batches["modelport_batch_size_sum"] == sum(i % 3 + 1 for i in range(32))


def test_queue_full_is_503_and_the_server_recovers(repo: Repository) -> None:
    models = {"slow": {"batching": False, "max_queue_size": 1, "intra_op_threads": 1}}
    with serving(repo, ["slow"], models=models) as srv:
        body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}

        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60,
                                         limits=httpx.Limits(max_connections=16)) as client:
                return await asyncio.gather(
                    *(client.post("/v2/models/slow/infer", json=body) for _ in range(16)))

        responses = asyncio.run(main())
        codes = [r.status_code for r in responses]
        assert set(codes) == {200, 503}, codes
        for response in responses:
            if response.status_code == 503:
                assert "queue is full" in response.json()["error"]
            else:
                assert response.json()["outputs"][0]["data"] == [2.0]
        again = httpx.post(f"{srv.url}/v2/models/slow/infer", json=body)
        assert again.status_code == 200
        text = httpx.get(f"{srv.url}/metrics").text
        failures = _metric(text, "modelport_request_failure_total", "slow")
        assert sum(failures.values()) == codes.count(503)


def test_inference_requests_take_the_protocols_lane(repo: Repository) -> None:
    x = np.random.default_rng(6).normal(size=(3, 4)).astype(np.float32)
    # inline_max_ms=100: "fast" must not depend on how busy a shared CI core is.
    fast = ModelConfig(inline_max_ms=100)
    with serving(repo, ["mlp@production"], defaults=fast) as srv, \
            httpx.Client(base_url=srv.url) as client:
        body = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32",
                            "data": x.ravel().tolist()}]}
        for _ in range(5):
            answer = client.post("/v2/models/mlp/infer", json=body).json()
            scores = next(o for o in answer["outputs"] if o["name"] == "scores")
            np.testing.assert_allclose(np.array(scores["data"]).reshape(3, 3),
                                       mlp_reference(x, 0), rtol=1e-5)
        v1 = client.post("/v1/models/mlp:predict", json={"instances": x.tolist()})
        assert v1.status_code == 200 and len(v1.json()["predictions"]) == 3
        batcher = srv.app.state.service.loaded()[0].batcher
        assert batcher.loop_runs == 6 and batcher.runs == 6  # on the loop, not the worker
        assert srv.app.lane_answers == 6  # answered by the protocol, without the ASGI app


def test_alias_switch_while_serving(repo: Repository) -> None:
    x = np.random.default_rng(5).normal(size=(2, 4)).astype(np.float32)
    with serving(repo, ["mlp@production"]) as srv:
        client = triton.InferenceServerClient(f"127.0.0.1:{srv.port}")
        inp = triton.InferInput("x", [2, 4], "FP32")
        inp.set_data_from_numpy(x)

        def ask() -> tuple[str, np.ndarray]:
            result = client.infer("mlp", [inp])
            return result.get_response()["model_version"], result.as_numpy("scores")

        version, scores = ask()
        assert version == "1"
        np.testing.assert_allclose(scores, mlp_reference(x, 0), rtol=1e-5)
        repo.set_alias("mlp", "production", 2)
        time.sleep(0.03)  # the index is looked at every 20 ms at most (no TTL wait)
        version, scores = ask()
        assert version == "2"
        np.testing.assert_allclose(scores, mlp_reference(x, 1), rtol=1e-5)
        repo.set_alias("mlp", "production", 1)
        time.sleep(0.03)
        assert ask()[0] == "1"
        assert client.get_model_metadata("mlp")["version"] == "1"
        client.close()


def test_load_unload_through_the_repository_extension(repo: Repository) -> None:
    with serving(repo) as srv:
        client = triton.InferenceServerClient(f"127.0.0.1:{srv.port}")
        index = client.get_model_repository_index()
        assert {(e["name"], e["state"]) for e in index} == {("mlp", "READY"), ("slow", "READY")}
        client.unload_model("mlp")
        assert not client.is_model_ready("mlp")
        inp = triton.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(np.ones((1, 4), np.float32))
        with pytest.raises(InferenceServerException, match="unloaded") as info:
            client.infer("mlp", [inp])
        assert info.value.status() == "503"
        state = {e["name"]: e for e in client.get_model_repository_index()}
        assert state["mlp"]["state"] == "UNAVAILABLE" and state["mlp"]["reason"] == "unloaded"
        ready_only = httpx.post(f"{srv.url}/v2/repository/index", json={"ready": True}).json()
        assert [e["name"] for e in ready_only] == ["slow"]
        client.load_model("mlp")
        assert client.is_model_ready("mlp")
        assert client.infer("mlp", [inp]).as_numpy("scores").shape == (1, 3)
        with pytest.raises(InferenceServerException, match="nosuch") as info:
            client.load_model("nosuch")
        assert info.value.status() == "404"
        with pytest.raises(InferenceServerException, match="not supported"):
            client.load_model("mlp", config='{"max_batch_size": 8}')
        client.close()


def test_new_latest_version_switches_traffic(tmp_path_factory: pytest.TempPathFactory) -> None:
    repo = Repository(tmp_path_factory.mktemp("serve-latest") / "repo")
    register(repo, mlp_model(0), "m")
    x = {"x": np.ones((1, 4), np.float32)}
    from modelport.serve import remote_predict

    with serving(repo) as srv:
        first = remote_predict(srv.url, "m", x)["scores"]
        np.testing.assert_allclose(first, mlp_reference(x["x"], 0), rtol=1e-5)
        register(repo, mlp_model(1), "m")
        time.sleep(0.03)
        second = remote_predict(srv.url, "m", x)["scores"]
        np.testing.assert_allclose(second, mlp_reference(x["x"], 1), rtol=1e-5)
        assert math.isclose(float(remote_predict(srv.url, "m:1", x)["scores"][0, 0]),
                            float(first[0, 0]))


def test_a_corrupt_model_is_503_and_the_others_serve(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    repo = Repository(tmp_path_factory.mktemp("serve-corrupt") / "repo")
    register(repo, mlp_model(0), "good")
    register(repo, mlp_model(1), "bad")
    path = repo.resolve("bad").model_path
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-10] + b"corrupted!")
    with serving(repo) as srv:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
        bad = httpx.post(f"{srv.url}/v2/models/bad/infer", json=body)
        assert bad.status_code == 503 and "bad:1 cannot be loaded" in bad.json()["error"]
        assert httpx.post(f"{srv.url}/v2/models/good/infer", json=body).status_code == 200
        index = {e["name"]: e for e in httpx.post(f"{srv.url}/v2/repository/index").json()}
        assert index["good"]["state"] == "READY"
        assert index["bad"]["state"] == "UNAVAILABLE" and "bad:1" in index["bad"]["reason"]
