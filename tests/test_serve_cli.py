"""``modelport serve``: a real process, graceful shutdown, one-line errors; config layering."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from modelport.cli import cli
from modelport.errors import UsageError
from modelport.repository import Repository
from modelport.serve import ModelConfig, load_config
from tests.test_serve_support import mlp_model, register, slow_model


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-cli") / "repo"
    repo = Repository(root)
    register(repo, mlp_model(0), "mlp")
    register(repo, slow_model(768), "slow")
    repo.close()
    return root


def test_serve_process_answers_and_shuts_down_gracefully(repo_dir: Path) -> None:
    command = [sys.executable, "-c", "from modelport.cli import main; main()", "serve",
               "--repo", str(repo_dir), "--port", "0", "--intra-op-threads", "1",
               "--log-level", "warning"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"at http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.05)
        answer = httpx.post(f"{url}/v1/models/mlp:predict", json={"instances": [[1, 2, 3, 4]]})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1

        # Requests in flight when SIGTERM arrives still get their answers: three clients post
        # 70 ms requests back to back; some answer must arrive after the signal was sent.
        results: list[tuple[float, httpx.Response]] = []
        body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [3.0]}]}

        def post() -> None:
            with httpx.Client(timeout=30) as client:
                while True:
                    try:
                        response = client.post(f"{url}/v2/models/slow/infer", json=body)
                    except httpx.TransportError:  # the listener closed: shutdown under way
                        return
                    results.append((time.monotonic(), response))

        threads = [threading.Thread(target=post) for _ in range(3)]
        for thread in threads:
            thread.start()
        while len(results) < 3:
            time.sleep(0.01)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(30)
        assert any(when > signalled for when, _ in results), "nothing was in flight"
        for _, response in results:
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [6.0]
        # uvicorn re-raises the signal after its graceful shutdown, as a signalled process should
        assert process.wait(30) in (0, -signal.SIGTERM)
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["serve", *args])
    return result.exit_code, result.output


def test_port_in_use_exits_2(repo_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = _run("--repo", str(repo_dir), "--port", str(port))
    assert code == 2
    assert f"error: port {port} is in use; choose another with --port" in output


def test_unknown_ref_and_bad_config_exit_2(repo_dir: Path, tmp_path: Path) -> None:
    code, output = _run("--repo", str(repo_dir), "nosuch@production")
    assert code == 2 and "model 'nosuch' not found" in output
    config = tmp_path / "serve.toml"
    config.write_text("[defaults]\nmax_batch_sise = 8\n")
    code, output = _run("--repo", str(repo_dir), "--config", str(config))
    assert code == 2 and "unknown model setting 'max_batch_sise'" in output
    code, output = _run("--repo", str(repo_dir), "--providers", "nosuchprovider")
    assert code == 2 and "execution provider 'nosuchprovider' is not available" in output


def test_config_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        "[defaults]\nmax_batch_size = 8\nintra_op_threads = 2\n"
        "[models.iris]\nmax_batch_size = 4\nbatching = false\n"
        "[server]\nmax_body_bytes = 1000\n"
    )
    monkeypatch.setenv("MODELPORT_AUTH_TOKEN", "from-env")
    config = load_config(path).with_options(intra_op_threads=1, max_queue_delay_ms=None)
    assert config.max_body_bytes == 1000 and config.auth_token == "from-env"
    assert config.for_model("other") == ModelConfig(max_batch_size=8, intra_op_threads=1)
    assert config.for_model("iris") == ModelConfig(
        max_batch_size=4, intra_op_threads=1, batching=False
    )
    as_json = tmp_path / "serve.json"
    as_json.write_text(json.dumps({"models": {"x": {"providers": "cpu"}}}))
    assert load_config(as_json).for_model("x").providers == ("cpu",)
    with pytest.raises(UsageError, match="invalid value 'many' for max_batch_size"):
        load_config(None).with_options(max_batch_size="many")
    with pytest.raises(UsageError, match="max_batch_size must be at least 1"):
        ModelConfig(max_batch_size=0)


def test_serving_a_mistyped_repository_or_empty_host_is_a_one_line_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from modelport.cli import cli
    from modelport.repository import Repository

    result = CliRunner().invoke(cli, ["serve", "--repo", str(tmp_path / "typo"), "--port", "0"])
    assert result.exit_code == 2
    assert "is not a modelport repository" in result.output
    assert not (tmp_path / "typo").exists()
    Repository(tmp_path / "repo")
    result = CliRunner().invoke(cli, ["serve", "--repo", str(tmp_path / "repo"), "--host", " "])
    assert result.exit_code == 2 and "the host is empty" in result.output
