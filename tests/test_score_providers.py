"""CPU or GPU: the provider selection as pure functions, and the GPU discovery script, without a
GPU (a fake nvidia-smi stands in for the driver)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from formats.errors import MissingDependencyError
from formats.onnx.runtime import providers as p

SCRIPT = Path(__file__).resolve().parents[1] / "conf" / "spark" / "gpu-discovery.sh"
CPU_ONLY = ["AzureExecutionProvider", p.CPU]
WITH_CUDA = [p.CUDA, p.CPU]


def test_cpu_is_cpu_whatever_is_installed() -> None:
    assert p.choose("cpu", WITH_CUDA, ["3"], 0, False).providers == (p.CPU,)


def test_the_tasks_gpu_address_becomes_cudas_device_id() -> None:
    choice = p.choose("cuda", WITH_CUDA, ["3", "5"], 0, False)
    assert choice.providers == (p.CUDA, p.CPU)
    assert choice.provider_options() == [{"device_id": "3"}, {}]


def test_without_a_spark_address_the_configured_device() -> None:
    assert p.choose("cuda", WITH_CUDA, [], 2, False).provider_options()[0] == {"device_id": "2"}


def test_cuda_missing_on_an_executor_fails_unless_fallback_allowed() -> None:
    with pytest.raises(MissingDependencyError, match="no CUDA.*allow_cpu_fallback"):
        p.choose("cuda", CPU_ONLY, ["0"], 0, False)
    assert p.choose("cuda", CPU_ONLY, ["0"], 0, True).providers == (p.CPU,)


def test_driver_refuses_cuda_early_only_when_it_can_tell() -> None:
    with pytest.raises(MissingDependencyError, match="this node's onnxruntime has no CUDA"):
        p.check_driver("cuda", CPU_ONLY, "local[2]", False)
    # a cluster's executors may have the GPU the driver lacks: they decide
    p.check_driver("cuda", CPU_ONLY, "spark://10.0.0.1:7077", False)
    p.check_driver("cuda", CPU_ONLY, "local[2]", True)
    p.check_driver("cuda", WITH_CUDA, "local[*]", False)
    p.check_driver("cpu", CPU_ONLY, "local[2]", False)


def test_a_silent_ort_fallback_to_cpu_is_caught() -> None:
    with pytest.raises(MissingDependencyError, match="could not start CUDA and ran CPU"):
        p.check_ran("cuda", p.CPU, False)
    p.check_ran("cuda", p.CPU, True)
    p.check_ran("cuda", p.CUDA, False)
    p.check_ran("cpu", p.CPU, False)


def _discover(tmp_path: Path, fake: str | None) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if fake is not None:
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{fake}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)


def test_discovery_script_lists_every_gpu(tmp_path: Path) -> None:
    done = _discover(tmp_path, "printf '0\\n1\\n'")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"name": "gpu", "addresses": ["0", "1"]}


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (None, "nvidia-smi not found"),
        ("echo 'NVIDIA-SMI has failed' >&2; exit 9", "nvidia-smi failed: NVIDIA-SMI has failed"),
        ("exit 0", "lists no GPUs"),
    ],
)
def test_discovery_script_fails_in_one_line(tmp_path: Path, fake: str | None, message: str) -> None:
    if fake is None and Path("/usr/bin/nvidia-smi").exists():
        pytest.skip("this machine has nvidia-smi in /usr/bin")
    done = _discover(tmp_path, fake)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr
