"""The README's first command, end to end in its short mode, and the examples a user copies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from modelport.repository import Repository

ROOT = Path(__file__).resolve().parents[1]


def test_demo_short_runs_end_to_end(tmp_path: Path) -> None:
    from modelport.demo import run_demo

    console = Console(record=True, width=120, file=open(os.devnull, "w"))  # noqa: SIM115
    result = run_demo(repo_dir=tmp_path / "repo", short=True, console=console)

    assert [m.name for m in result.models] == ["digits-cnn", "digits-sklearn"]
    for outcome in result.models:
        assert outcome.parity_passed
        # The ONNX model and the server classify exactly like the original framework.
        assert outcome.onnx_accuracy == outcome.original_accuracy
        assert outcome.served_accuracy == outcome.original_accuracy
        assert outcome.max_abs_error < 1e-4
        assert outcome.onnx_ms > 0 and outcome.original_ms > 0
    assert result.models[1].original_accuracy > 0.9  # the pipeline learns digits well
    assert result.ok
    text = console.export_text()
    assert "verification passed" in text and "server stopped cleanly" in text

    repo = Repository(tmp_path / "repo")
    assert repo.resolve("digits-cnn@production").version == 1
    assert repo.load("digits-sklearn@production").signature.output_names == [
        "label",
        "probabilities",
    ]


def test_demo_command_reports_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "modelport.cli", "demo", "--short", "--repo",
             str(tmp_path / "r"), "--port", str(port)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )
    assert proc.returncode == 2, proc.stderr
    assert f"port {port} is in use" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "script", ["lightning_cnn.py", "sklearn_mixed_columns.py", "gradient_boosting.py"]
)
def test_example_scripts_run(script: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout
