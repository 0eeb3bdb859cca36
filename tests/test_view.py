"""``python -m formats view``: Netron serves the model on loopback, and stops."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from formats.cli import cli
from formats.errors import NotFoundError, UsageError
from formats.onnx.view import start_view
from tests import onnx_models


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_serves_the_model_file_on_loopback_then_stops(tmp_path: Path) -> None:
    model = onnx_models.save(onnx_models.mlp(), tmp_path / "mlp.onnx")
    server = start_view(model, browse=False)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        status, page = _get(server.url)
        assert status == 200 and b"<html" in page.lower()
        assert b"/data/mlp.onnx" in page  # the page is told which file to open
        status, body = _get(server.model_url)
        assert status == 200 and body == model.read_bytes()
    finally:
        server.stop()
    assert not server.running
    with pytest.raises(urllib.error.URLError):
        _get(server.url)


def test_bundle_directory_shows_its_model_onnx(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    model = onnx_models.save(onnx_models.doubler(), bundle / "model.onnx")
    with start_view(bundle) as server:
        assert server.label == "bundle/model.onnx"
        assert server.model_file == model
        status, body = _get(server.model_url)
        assert status == 200 and body == model.read_bytes()


def test_a_directory_must_be_a_bundle_with_a_model_onnx(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UsageError, match="not a bundle"):
        start_view(plain)
    (plain / "manifest.json").write_text("{}")
    with pytest.raises(NotFoundError, match="has no model.onnx"):
        start_view(plain)
    with pytest.raises(UsageError, match="no model given"):
        start_view("")


def test_port_in_use_says_so(tmp_path: Path) -> None:
    model = onnx_models.save(onnx_models.doubler(), tmp_path / "d.onnx")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} is in use"):
            start_view(model, port=port)


def test_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["view", str(tmp_path / "nope.onnx"), "--no-browser"])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert "does not exist" in result.output

    result = runner.invoke(cli, ["view", str(tmp_path), "--no-browser"])
    assert result.exit_code == 2 and "not a bundle" in result.output


def test_command_blocks_until_interrupted(tmp_path: Path) -> None:
    """The real command: prints the URL, serves until Ctrl-C (SIGINT), then exits cleanly."""
    import re
    import signal
    import subprocess
    import sys

    model = onnx_models.save(onnx_models.doubler(), tmp_path / "d.onnx")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from formats.cli import main; main()",
            "view",
            str(model),
            "--no-browser",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line + (process.stderr.read() if process.stderr else "")
        status, body = _get(match.group(0) + "/data/d.onnx")
        assert status == 200 and body == model.read_bytes()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
