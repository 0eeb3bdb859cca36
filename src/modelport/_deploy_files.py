"""The text of the files in a deploy context: Dockerfile, entrypoint, Kubernetes manifests, README.

``deploy.py`` decides what goes where and writes it; the functions here only render text from
what it passes in, so that the generated files can be read (and changed) in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CONTAINER_REPO",
    "LIVE_PATH",
    "READY_PATH",
    "deployment_yaml",
    "dockerfile",
    "entrypoint",
    "inferenceservice_yaml",
    "readme",
    "requirements_text",
]

CONTAINER_REPO = "/models"
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
_UID = 10001  # numeric, so that Kubernetes' runAsNonRoot can check it


def requirements_text(requirements: list[str]) -> str:
    header = (
        "# modelport's runtime dependencies, pinned to the versions it was tested with.\n"
        "# modelport itself is installed from the wheel in wheels/.\n"
    )
    return header + "\n".join(requirements) + "\n"


def entrypoint(port: int) -> str:
    return f"""#!/bin/sh
# Serve the model repository baked into the image with modelport (Open Inference Protocol V2).
# MODELPORT_REPO, MODELPORT_HOST and MODELPORT_PORT override the defaults, so the same script
# runs outside a container too; extra arguments are passed on to 'modelport serve'.
set -eu
exec modelport serve \\
  --repo "${{MODELPORT_REPO:-{CONTAINER_REPO}}}" \\
  --host "${{MODELPORT_HOST:-0.0.0.0}}" \\
  --port "${{MODELPORT_PORT:-{port}}}" \\
  "$@"
"""


def dockerfile(base_image: str, wheel_name: str, port: int, served: str) -> str:
    healthcheck = (
        "import os, urllib.request; urllib.request.urlopen("
        f"'http://127.0.0.1:%s{READY_PATH}' % os.environ.get('MODELPORT_PORT', '{port}'), "
        "timeout=4)"
    )
    return f"""# Build: docker build -t IMAGE .      Run: docker run --rm -p {port}:{port} IMAGE
# Serves {served} with modelport on port {port} (Open Inference Protocol V2).
FROM {base_image}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    MODELPORT_REPO={CONTAINER_REPO} \\
    MODELPORT_HOST=0.0.0.0 \\
    MODELPORT_PORT={port}

# An unprivileged user with a fixed numeric id (Kubernetes' runAsNonRoot checks the number).
RUN groupadd --system --gid {_UID} modelport \\
 && useradd --system --uid {_UID} --gid {_UID} --home-dir /app --shell /usr/sbin/nologin modelport

WORKDIR /app
# Dependencies first: this layer is reused while only the model changes.
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r /app/requirements.txt
COPY wheels/{wheel_name} /tmp/wheels/{wheel_name}
RUN pip install --no-cache-dir --no-deps /tmp/wheels/{wheel_name} && rm -rf /tmp/wheels

COPY entrypoint.sh /app/entrypoint.sh
# The repository keeps its SQLite index and lock files next to the packages, so the service
# user owns it; the packages themselves are checked against their sha256 on every load.
COPY --chown={_UID}:{_UID} models/ {CONTAINER_REPO}/

USER {_UID}:{_UID}
EXPOSE {port}
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \\
  CMD ["python", "-c", {json.dumps(healthcheck)}]
ENTRYPOINT ["/app/entrypoint.sh"]
"""


def _probe(path: str, port: int | str, delay: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def _container(
    name: str,
    image: str,
    *,
    env: list[dict[str, str]],
    ports: list[dict[str, Any]],
    probe_port: int | str,
    pull_policy: str | None = None,
) -> dict[str, Any]:
    """The serving container, alike in the Deployment and the InferenceService: V2 health
    probes, modest resources (a starting point), and no privileges."""
    container: dict[str, Any] = {"name": name, "image": image}
    if pull_policy is not None:
        container["imagePullPolicy"] = pull_policy
    container.update(
        env=env,
        ports=ports,
        readinessProbe=_probe(READY_PATH, probe_port, 2, 5),
        livenessProbe=_probe(LIVE_PATH, probe_port, 10, 10),
        resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        securityContext={
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": _UID,
            "runAsGroup": _UID,
            "capabilities": {"drop": ["ALL"]},
        },
    )
    return container


def deployment_yaml(name: str, image: str, port: int, labels: Mapping[str, str]) -> str:
    selector = {"app.kubernetes.io/name": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        _container(
                            "modelport",
                            image,
                            pull_policy="IfNotPresent",
                            env=[{"name": "MODELPORT_PORT", "value": str(port)}],
                            ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
                            probe_port="http",
                        )
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    header = (
        f"# Deployment and Service for {labels['modelport.io/model']} "
        f"version {labels['modelport.io/version']}, served by modelport on port {port}.\n"
        "# kubectl apply -f k8s/deployment.yaml   (resources are a starting point: adjust)\n"
    )
    return header + _yaml_documents([deployment, service])


def inferenceservice_yaml(name: str, image: str, port: int, labels: Mapping[str, str]) -> str:
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "predictor": {
                "containers": [
                    _container(
                        # KServe's name for the serving container of a custom predictor.
                        "kserve-container",
                        image,
                        # A custom predictor declares its protocol with the PROTOCOL variable;
                        # modelport speaks the Open Inference Protocol (V2).
                        env=[
                            {"name": "PROTOCOL", "value": "v2"},
                            {"name": "MODELPORT_PORT", "value": str(port)},
                        ],
                        # Knative routes to the single declared port (no name: it only allows
                        # http1 or h2c as names).
                        ports=[{"containerPort": port, "protocol": "TCP"}],
                        probe_port=port,
                    )
                ]
            }
        },
    }
    header = (
        "# KServe InferenceService (custom predictor, Open Inference Protocol V2: PROTOCOL=v2).\n"
        "# kubectl apply -f k8s/inferenceservice.yaml\n"
    )
    return header + _yaml_documents([service])


def _yaml_documents(documents: list[dict[str, Any]]) -> str:
    try:
        import yaml
    except ImportError:
        # JSON is valid YAML 1.2; without PyYAML the manifests are still correct, if plainer.
        return "---\n".join(json.dumps(d, indent=2) + "\n" for d in documents)
    return str(yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False))


def readme(version: Any, served: str, image: str, port: int, k8s_name: str) -> str:
    signature = version.signature
    name = served.partition(":")[0]
    first = signature.inputs[0] if signature.inputs else None
    example = ""
    if first is not None:
        shape = [1 if not isinstance(d, int) else d for d in first.shape]
        count = 1
        for d in shape:
            count *= d
        data = json.dumps([0] * min(count, 8)) if count <= 8 else f"[... {count} values ...]"
        example = (
            f"curl -s localhost:{port}/v2/models/{name}/infer -H 'content-type: application/json' "
            f"""-d '{{"inputs": [{{"name": "{first.name}", "datatype": "{first.datatype}", """
            f""""shape": {json.dumps(shape)}, "data": {data}}}]}}'"""
        )
    inputs = "\n".join(
        f"- `{s.name}`: {s.dtype} {s.wire_shape}" for s in signature.inputs
    )  # fmt: skip
    outputs = "\n".join(f"- `{s.name}`: {s.dtype} {s.wire_shape}" for s in signature.outputs)
    return f"""# {version.name} version {version.version}, packaged by modelport

Built from `{version.ref}`. The image's repository (`models/`, a modelport repository with
this one model) holds it as `{served}` (its manifest's `imported_from` records
`{version.ref}`); the server answers for `{name}` at `/v2/models/{name}` on port {port}.
Set `MODELPORT_AUTH_TOKEN` in the container to require a bearer token (the health routes stay
open for the probes).

Inputs:
{inputs}

Outputs:
{outputs}

## Build and run
```
docker build -t {image} .
docker run --rm -p {port}:{port} {image}
curl -s localhost:{port}{READY_PATH}
{example}
```

## Kubernetes
```
kubectl apply -f k8s/deployment.yaml          # Deployment + Service "{k8s_name}"
kubectl apply -f k8s/inferenceservice.yaml    # or: KServe InferenceService (V2 protocol)
```
Push the image to a registry the cluster can pull from first (and change `image:` if needed).

## Without Docker
```
MODELPORT_REPO=./models MODELPORT_HOST=127.0.0.1 sh entrypoint.sh
```
"""
