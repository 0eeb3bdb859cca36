"""``modelport deploy``: a container build context and Kubernetes manifests for one model version.

The context is self-contained and needs no network at build time beyond the Python package index:

    Dockerfile            slim Python base, pinned requirements, non-root user, health check
    requirements.txt      modelport's runtime dependencies pinned to the versions installed here
    wheels/               a wheel of this very modelport (it is not on PyPI)
    entrypoint.sh         runs ``modelport serve`` on the baked-in repository
    models/               a one-model modelport repository (checksums re-verified on the way in)
    k8s/deployment.yaml   Deployment + Service, readiness and liveness probes on the V2 routes
    k8s/inferenceservice.yaml  a KServe InferenceService speaking the V2 protocol
    README.md             how to build, run and apply it

The whole directory is built beside ``out`` and renamed into place at the end, so a failure
never leaves half a context behind. The files' text is rendered by ``_deploy_files.py``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from modelport._deploy_files import (
    CONTAINER_REPO,
    deployment_yaml,
    dockerfile,
    entrypoint,
    inferenceservice_yaml,
    readme,
    requirements_text,
)
from modelport._files import apply_umask
from modelport.errors import NotFoundError, UsageError

__all__ = [
    "CONTAINER_REPO",
    "DeployContext",
    "build_wheel",
    "deploy",
    "pinned_requirements",
]

_IMAGE = re.compile(
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"  # optional registry host[:port]/
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"  # repository path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # :tag
    r"(?:@sha256:[a-f0-9]{64})?"
)
_RUNTIME_EXTRAS = ("serve",)  # what the image needs besides the core: the server


@dataclass
class DeployContext:
    directory: Path
    image: str
    port: int
    model: str  # the reference served inside the image ("name:1")
    source: str  # the reference it came from ("name:3")
    k8s_name: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "image": self.image,
            "port": self.port,
            "model": self.model,
            "source": self.source,
            "k8s_name": self.k8s_name,
            "files": self.files,
            "notes": self.notes,
        }


def deploy(
    ref: str,
    out: str | Path,
    *,
    repo: str | Path | None = None,
    image: str | None = None,
    port: int = 8000,
    wheel: str | Path | None = None,
    base_image: str | None = None,
    force: bool = False,
) -> DeployContext:
    """Write a build context for repository version ``ref`` to ``out`` (a new directory)."""
    from modelport.repository import Repository

    out = Path(out)
    if not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {port}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"{str(out)!r} is not empty; choose a new directory or pass --force")
    if wheel is not None and Path(wheel).is_dir():
        raise UsageError(f"wheel {str(wheel)!r} is a directory; give the modelport-*.whl file")
    if wheel is not None and not Path(wheel).is_file():
        raise NotFoundError(f"wheel {str(wheel)!r} does not exist")

    if Path(ref).is_file() or "/" in ref or "\\" in ref:  # a path: names have no slashes
        raise UsageError(
            f"deploy packages a registered version, not a file; register {ref!r} first "
            "('modelport models register FILE --name NAME'), then deploy NAME"
        )
    source = Repository(root=repo, create=False)
    _check_apart(out, source.root)
    version = source.load(ref)  # checksums of every file checked here
    k8s_name = kubernetes_name(version.name)
    image = f"modelport-{k8s_name}:{version.version}" if image is None else image
    if base_image is None:
        base_image = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    for flag, name in (("--image", image), ("--base-image", base_image)):
        if not _IMAGE.fullmatch(name):  # an empty one included: it would write "FROM " or "image: "
            raise UsageError(
                f"invalid image name {name!r} ({flag}); use e.g. 'registry.example.com/team/model:1'"
            )

    with _staging(out, force) as ctx:
        served = _copy_model(source, version.ref, ctx / "models")
        wheel_file = _place_wheel(wheel, ctx / "wheels")
        requirements, notes = pinned_requirements()
        _write(ctx / "requirements.txt", requirements_text(requirements))
        _write(ctx / "entrypoint.sh", entrypoint(port), mode=0o755)
        _write(ctx / "Dockerfile", dockerfile(base_image, wheel_file.name, port, served))
        _write(ctx / ".dockerignore", "k8s/\nREADME.md\n")
        labels = {
            "app.kubernetes.io/name": k8s_name,
            "app.kubernetes.io/part-of": "modelport",
            "modelport.io/model": version.name,
            "modelport.io/version": str(version.version),
        }
        _write(ctx / "k8s" / "deployment.yaml", deployment_yaml(k8s_name, image, port, labels))
        _write(
            ctx / "k8s" / "inferenceservice.yaml",
            inferenceservice_yaml(k8s_name, image, port, labels),
        )
        _write(ctx / "README.md", readme(version, served, image, port, k8s_name))
        files = sorted(
            str(p.relative_to(ctx)) for p in ctx.rglob("*") if p.is_file() and _listed(p, ctx)
        )
    return DeployContext(out, image, port, served, version.ref, k8s_name, files, notes)


def kubernetes_name(name: str) -> str:
    """A DNS-1123 label from a model name: lower case, '-' for anything else, at most 63."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label)[:63].rstrip("-")
    return label or "model"


# --------------------------------------------------------------------------- building blocks
def _check_apart(out: Path, root: Path) -> None:
    """--out replaces its directory: it must neither hold the repository nor sit inside it."""
    out, root = out.resolve(), root.resolve()
    if out == root or out in root.parents or root in out.parents:
        raise UsageError(
            f"--out {str(out)!r} overlaps the repository {str(root)!r}; choose a directory "
            "outside it"
        )


@contextlib.contextmanager
def _staging(out: Path, force: bool) -> Iterator[Path]:
    """A fresh directory beside ``out``, renamed over it only when everything was written."""
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
        apply_umask(staging, directory=True)  # mkdtemp makes it private (0700)
    except OSError as exc:
        raise UsageError(f"cannot write to {str(parent)!r}: {exc.strerror}") from exc
    try:
        yield staging
        old: Path | None = None
        if out.exists():
            # An empty directory, or --force: move it aside first so the swap is one rename.
            old = parent / f".{out.name}.{os.getpid()}.old"
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _listed(path: Path, root: Path) -> bool:
    # The repository's lock and index journal files are runtime state, not content to list.
    return not any(part.startswith(".") for part in path.relative_to(root).parts[:-1])


def _copy_model(source: Any, ref: str, root: Path) -> str:
    """Export the version and import it into a fresh repository inside the context.

    Going through the archive format (rather than copying directories) means the copy is checked
    against the manifest's checksums again on import, and the context's repository index is
    written by the repository code itself.
    """
    from modelport.repository import Repository

    target = Repository(root=root)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        archive = source.export_version(ref, Path(tmp) / "model.tar.gz")
        imported = target.import_archive(archive)
    close = getattr(target, "close", None)
    if callable(close):
        close()
    return str(imported.ref)


def _place_wheel(wheel: str | Path | None, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        source = Path(wheel)
        if not source.name.startswith("modelport-") or source.suffix != ".whl":
            raise UsageError(f"{source.name!r} is not a modelport wheel (modelport-*.whl)")
        target = directory / source.name
        shutil.copyfile(source, target)
        return target
    return build_wheel(directory)


def build_wheel(directory: str | Path) -> Path:
    """A pure-Python wheel of the modelport that is running, from its installed files.

    modelport is not on PyPI, so the image must get this very version. Packing the imported
    package directory with its installed metadata works for editable and regular installs alike,
    needs no build backend or network, and ships exactly the code whose tests just passed.
    """
    import modelport

    try:
        dist = metadata.distribution("modelport")
    except metadata.PackageNotFoundError as exc:
        raise UsageError(
            "modelport is not installed as a distribution; install it (pip install -e .) or "
            "pass --wheel PATH"
        ) from exc
    name_version = f"modelport-{dist.version}"
    dist_info = f"modelport-{dist.version}.dist-info"
    package_dir = Path(modelport.__file__).parent
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name_version}-py3-none-any.whl"
    record: list[str] = []

    def add(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")

    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(package_dir.rglob("*")):
            relative = path.relative_to(package_dir)
            if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
                continue
            add(zf, f"modelport/{relative.as_posix()}", path.read_bytes())
        add(zf, f"{dist_info}/METADATA", (dist.read_text("METADATA") or "").encode())
        entry_points = dist.read_text("entry_points.txt")
        if entry_points:
            add(zf, f"{dist_info}/entry_points.txt", entry_points.encode())
        wheel_meta = (
            "Wheel-Version: 1.0\nGenerator: modelport.deploy\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        )
        add(zf, f"{dist_info}/WHEEL", wheel_meta.encode())
        record.append(f"{dist_info}/RECORD,,")
        zf.writestr(
            zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0)),
            "\n".join(record) + "\n",
        )
    return target


def pinned_requirements() -> tuple[list[str], list[str]]:
    """modelport's core and ``serve`` dependencies, pinned to the versions installed here."""
    notes: list[str] = []
    try:
        declared = metadata.requires("modelport") or []
    except metadata.PackageNotFoundError:
        declared = []
    wanted: list[str] = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if marker.strip() and (extra is None or extra.group(1) not in _RUNTIME_EXTRAS):
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if match and match.group(1) not in wanted:
            wanted.append(match.group(1))
    if not wanted:  # not installed as a distribution: the documented core
        wanted = ["numpy", "onnx", "onnxruntime", "click", "rich"]
        wanted += ["starlette", "uvicorn", "orjson", "prometheus-client"]
    pinned = []
    for package in wanted:
        try:
            pinned.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pinned.append(package)
            notes.append(f"{package} is not installed here; requirements.txt leaves it unpinned")
    return pinned, notes


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
