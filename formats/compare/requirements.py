"""What each format needs installed to score: packages (with their dependencies) and their size
on disk, and the runtime beyond Python (Java for PMML, Node.js for ONNX outside Python).

Sizes are the installed files each distribution's RECORD lists here, so they are this machine's
wheels, not a registry's. Dependencies are followed from each package's metadata (extras off).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path

from formats.compare.results import Package, Requirement

__all__ = ["ROOTS", "directory_bytes", "requirements"]

# (format, engine) -> the distributions a scoring process imports.
ROOTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("pickle", "sklearn"): ("scikit-learn",),
    ("skops", "sklearn"): ("skops", "scikit-learn"),
    ("pmml", "pypmml"): ("pypmml",),
    ("pmml", "jpmml"): ("jpmml_evaluator",),
    ("onnx", "onnxruntime"): ("onnxruntime",),
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _dist_bytes(name: str) -> int:
    dist = metadata.distribution(name)
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def _requires(name: str) -> list[str]:
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Req

    found = []
    for line in metadata.requires(name) or []:
        try:
            req = Req(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            found.append(req.name)
    return found


def closure(roots: Iterable[str]) -> list[Package]:
    """The installed distributions ``roots`` need, dependencies included, each once."""
    seen: dict[str, Package] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        key = _canonical(name)
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this machine does not have
        seen[key] = Package(dist.metadata["Name"], dist.version, _dist_bytes(name))
        todo += _requires(name)
    return sorted(seen.values(), key=lambda p: -p.bytes)


def directory_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            file = Path(root, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def _java() -> tuple[str, int | None]:
    from formats.errors import MissingDependencyError
    from formats.java import java_version

    try:
        line = java_version()
    except MissingDependencyError as exc:
        return f"Java: missing ({exc})", None
    home = os.environ.get("JAVA_HOME")
    java = Path(home, "bin", "java") if home else Path(shutil.which("java") or "")
    jdk = java.resolve().parent.parent  # <jdk>/bin/java
    return f"Java: {line} ({jdk})", directory_bytes(jdk)


def requirements(
    formats: Iterable[tuple[str, str]], needs_pandas: bool, node_dir: Path | None
) -> list[Requirement]:
    """One :class:`Requirement` per (format, engine). ``needs_pandas``: the model selects its
    columns by name, so a scikit-learn format is fed a DataFrame."""
    python = f"Python {platform.python_version()}"
    out = []
    for fmt, engine in formats:
        roots = list(ROOTS.get((fmt, engine), ()))
        note = ""
        if fmt in ("pickle", "skops") and needs_pandas:
            roots.append("pandas")
            note = "pandas: the pipeline selects its columns by name"
        runtime, runtime_bytes = (python, None)
        if fmt == "pmml":
            runtime, runtime_bytes = _java()
            note = "the JVM runs in its own process; pypmml and jpmml_evaluator ship their jars"
        out.append(Requirement(fmt, engine, closure(roots), runtime, runtime_bytes, note))
    if node_dir is not None and (node_dir / "node_modules").is_dir():
        node = shutil.which("node")
        size = directory_bytes(node_dir / "node_modules")
        packages = [Package("onnxruntime-node (npm, every platform's binaries)", _npm_version(node_dir), size)]
        runtime = f"Node.js ({node})" if node else "Node.js: missing"
        node_bytes = Path(node).stat().st_size if node else None
        out.append(Requirement("onnx", "onnxruntime-node", packages, runtime, node_bytes,
                               "outside Python: no Python at all"))  # fmt: skip
    return out


def _npm_version(node_dir: Path) -> str:
    import json

    package = node_dir / "node_modules" / "onnxruntime-node" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, KeyError, ValueError):
        return "?"
