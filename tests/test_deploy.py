"""``modelport deploy``: the build context's contents, and its entrypoint serving a real request.

No Docker engine runs here, so the test does what the image would do: install the context's wheel
(into a directory on PYTHONPATH), run the context's entrypoint script on the context's model
repository, wait for the V2 readiness route and send an inference request.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from modelport.cli import cli
from modelport.deploy import deploy, kubernetes_name
from modelport.errors import NotFoundError, UsageError
from modelport.repository import Repository
from tests import onnx_models

EXAMPLE = np.arange(8, dtype=np.float32).reshape(2, 4) / 8


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deploy") / "repo"
    repo = Repository(root)
    repo.register(onnx_models.doubler(), "Digits_CNN")  # version 1: not the one deployed
    repo.register(onnx_models.mlp(), "Digits_CNN", sample={"x": EXAMPLE})
    repo.close()
    return root


@pytest.fixture(scope="module")
def context(source_repo: Path) -> Path:
    out = source_repo.parent / "ctx"
    result = CliRunner().invoke(
        cli, ["deploy", "Digits_CNN:2", "--repo", str(source_repo), "--out", str(out),
              "--image", "registry.example.com/ml/digits:2", "--port", "8123"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "docker build -t registry.example.com/ml/digits:2" in result.output
    return out


def test_context_files(context: Path) -> None:
    for name in (
        "Dockerfile",
        "requirements.txt",
        "entrypoint.sh",
        "README.md",
        "k8s/deployment.yaml",
        "k8s/inferenceservice.yaml",
        "models/modelport.db",
    ):
        assert (context / name).is_file(), name  # fmt: skip
    assert os.access(context / "entrypoint.sh", os.X_OK)
    assert not [p for p in context.parent.iterdir() if p.name.startswith(".ctx")]  # no staging


def test_dockerfile(context: Path) -> None:
    lines = (context / "Dockerfile").read_text().splitlines()
    assert lines[[i for i, x in enumerate(lines) if x.startswith("FROM")][0]].startswith(
        f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    )
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("root", "0")
    assert "EXPOSE 8123" in lines
    healthcheck = "\n".join(lines[[i for i, x in enumerate(lines) if "HEALTHCHECK" in x][0] :])
    assert "/v2/health/ready" in healthcheck and "8123" in healthcheck
    assert 'ENTRYPOINT ["/app/entrypoint.sh"]' in lines
    text = "\n".join(lines)
    wheel = next((context / "wheels").glob("modelport-*.whl")).name
    assert f"COPY wheels/{wheel}" in text and "models/ /models/" in text
    assert "pip install --no-cache-dir -r /app/requirements.txt" in text
    # the user is switched to after everything is installed
    assert lines.index(user[-1]) > max(i for i, x in enumerate(lines) if x.startswith("RUN "))


def test_requirements_are_pinned(context: Path) -> None:
    import onnxruntime

    requirements = [
        line for line in (context / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert f"onnxruntime=={onnxruntime.__version__}" in requirements
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", r) for r in requirements), requirements
    names = {r.split("==")[0] for r in requirements}
    assert {"numpy", "onnx", "starlette", "uvicorn"} <= names
    assert "torch" not in names  # only what serving needs


def test_wheel_is_this_modelport(context: Path) -> None:
    import hashlib
    from base64 import urlsafe_b64encode

    import modelport

    (wheel,) = (context / "wheels").glob("modelport-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "modelport/deploy.py" in names and "modelport/py.typed" in names
        assert not [n for n in names if "__pycache__" in n]
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        for line in zf.read(record).decode().splitlines():
            path, digest, size = line.rsplit(",", 2)
            if path == record:
                continue
            data = zf.read(path)
            assert int(size) == len(data)
            assert (
                digest
                == "sha256="
                + urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            )
        source = Path(modelport.__file__).parent / "deploy.py"
        assert zf.read("modelport/deploy.py") == source.read_bytes()


def _documents(path: Path) -> list[Any]:
    """All YAML documents of a manifest; without PyYAML, deploy writes JSON documents (which
    are YAML too), so they are read as such."""
    text = path.read_text()
    try:
        import yaml
    except ImportError:
        body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        return [json.loads(part) for part in re.split(r"^---$", body, flags=re.M) if part.strip()]
    return list(yaml.safe_load_all(text))


def test_kubernetes_manifests(context: Path) -> None:
    deployment, service = _documents(context / "k8s" / "deployment.yaml")
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    assert deployment["metadata"]["name"] == "digits-cnn" == kubernetes_name("Digits_CNN")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/ml/digits:2"
    assert container["ports"][0]["containerPort"] == 8123
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["port"] == container["ports"][0]["name"]
    assert container["securityContext"]["runAsNonRoot"] is True
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["port"] == 8123
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    (isvc,) = _documents(context / "k8s" / "inferenceservice.yaml")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    (predictor,) = isvc["spec"]["predictor"]["containers"]
    assert predictor["name"] == "kserve-container"
    assert predictor["image"] == "registry.example.com/ml/digits:2"
    assert {"name": "PROTOCOL", "value": "v2"} in predictor["env"]
    assert predictor["ports"] == [{"containerPort": 8123, "protocol": "TCP"}]
    assert predictor["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8123}


def test_models_directory_is_a_repository_with_the_version(context: Path) -> None:
    with Repository(context / "models") as repo:
        (info,) = repo.list_models()
        version = repo.load("Digits_CNN")  # checksums verified again
        assert version.manifest.imported_from["version"] == 2
        assert version.signature.input_names == ["x"]
        np.testing.assert_array_equal(version.input_example()["x"], EXAMPLE)


def _wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.communicate()[1]}")
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def test_entrypoint_serves_an_inference_request(context: Path, tmp_path: Path) -> None:
    """The image's steps without Docker: install the wheel, run the entrypoint, call the model."""
    pytest.importorskip("modelport.serve.client")
    from modelport.serve.client import remote_predict

    wheel = next((context / "wheels").glob("modelport-*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(site), str(wheel)],
        check=True,
    )  # fmt: skip
    env = dict(os.environ)
    env.update(
        # the wheel's code and console script first; its dependencies from this environment
        PATH=os.pathsep.join([str(site / "bin"), str(Path(sys.executable).parent), env["PATH"]]),
        PYTHONPATH=str(site),
        MODELPORT_REPO=str(context / "models"),
        MODELPORT_HOST="127.0.0.1",
        MODELPORT_PORT="0",  # any free port; the server prints the one it bound
    )
    process = subprocess.Popen(
        ["sh", str(context / "entrypoint.sh"), "--intra-op-threads", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = match.group(0)
        _wait_ready(url, process)

        features = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
        got = remote_predict(url, "Digits_CNN", {"x": features})
        session = ort.InferenceSession(
            str(context / "models" / "packages" / "Digits_CNN" / "1" / "model.onnx"),
            providers=["CPUExecutionProvider"],
        )
        want = dict(zip(["logits", "label"], session.run(["logits", "label"], {"x": features}),
                        strict=True))  # fmt: skip
        np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got["label"], want["label"])
        # and the code that served it is the wheel's, not the source tree's
        probe = subprocess.run(
            [sys.executable, "-c", "import modelport; print(modelport.__file__)"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert probe.stdout.strip().startswith(str(site))
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_bad_input(source_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        deploy("ghost", tmp_path / "a", repo=source_repo)
    assert not (tmp_path / "a").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty.*--force"):
        deploy("Digits_CNN", tmp_path / "full", repo=source_repo)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    with pytest.raises(UsageError, match="invalid image name"):
        deploy("Digits_CNN", tmp_path / "b", repo=source_repo, image="Bad Image!")
    with pytest.raises(UsageError, match="--port"):
        deploy("Digits_CNN", tmp_path / "c", repo=source_repo, port=70000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # nothing half-written


def test_force_replaces_and_default_image(source_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "old.txt").write_text("old")
    result = deploy("Digits_CNN:1", out, repo=source_repo, force=True)
    assert not (out / "old.txt").exists() and (out / "Dockerfile").is_file()
    assert result.image == "modelport-digits-cnn:1"
    assert result.source == "Digits_CNN:1" and result.model == "Digits_CNN:1"
    assert "EXPOSE 8000" in (out / "Dockerfile").read_text()
