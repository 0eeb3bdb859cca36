"""The two foreign environments the portability checks score in, made once and cached.

* a venv with an older scikit-learn (``<cache>/sklearn-<version>``), to load the pickle in;
* ``onnxruntime-node`` from npm (``<cache>/node``), to score the ONNX model outside Python.

Each is built in a temporary directory beside its place and renamed into it when complete, so an
interrupted install is never mistaken for a finished one. A failure is returned as a sentence
that says what to run by hand (no network, no npm), never raised: the other checks still run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["node_runtime", "old_sklearn_python"]

INSTALL_TIMEOUT = 900.0
NODE_HINT = "install Node.js 18 or newer with npm (Debian/Ubuntu: apt-get install -y nodejs npm)"


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    real = [line for line in lines if not line.startswith("WARNING: Location")]
    return " ".join((real or lines or ["no output"])[-1].split())[:300]


def _build(place: Path, steps: list[list[str]]) -> str | None:
    """Run ``steps`` (``{tmp}`` in an argument: the temporary directory); None on success."""
    place.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{place.name}.", dir=place.parent))
    try:
        for step in steps:
            command = [arg.replace("{tmp}", str(tmp)) for arg in step]
            try:
                proc = subprocess.run(
                    command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"{Path(command[0]).name} failed ({exc})"
            if proc.returncode != 0:
                what = " ".join([Path(command[0]).name, *command[1:3]])
                return f"{what} failed: {_last_line(proc)}"
        if place.exists():  # another run finished first
            return None
        os.replace(tmp, place)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def old_sklearn_python(version: str, cache: Path) -> Path | str:
    """The python of a venv holding scikit-learn ``version``, or why there is none."""
    place = cache / f"sklearn-{version}"
    python = place / "bin" / "python"
    if python.exists():
        return python
    # pandas < 3, as this project pins it: what a user of that scikit-learn would have had.
    packages = [f"scikit-learn=={version}", "pandas<3", "pyarrow"]
    # Built in a temporary directory and renamed: a venv moves fine as long as it is run as
    # `python -m ...` (bin/python is a link to the base interpreter; only the scripts' shebang
    # lines and bin/activate keep the old path, and neither is used).
    failure = _build(
        place,
        [
            [sys.executable, "-m", "venv", "{tmp}"],
            ["{tmp}/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
             *packages],
        ],
    )  # fmt: skip
    if failure is None and python.exists():
        return python
    return (
        f"could not create a venv with scikit-learn {version} ({failure}); run: python3 -m venv "
        f"{place} && {place}/bin/pip install {' '.join(repr(p) for p in packages)}"
    )


def node_runtime(cache: Path) -> tuple[str, Path] | str:
    """(the node binary, the directory whose node_modules holds onnxruntime-node), or why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        return f"Node.js was not found; {NODE_HINT}"
    place = (cache / "node").resolve()
    if (place / "node_modules" / "onnxruntime-node" / "package.json").exists():
        return node, place
    if npm is None:
        return f"npm was not found (Node.js is at {node}); {NODE_HINT}"
    # --ignore-scripts: the postinstall step only downloads the CUDA binaries; the CPU ones ship
    # in the package itself, and the download fails on machines without internet access.
    failure = _build(
        place,
        [[npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", "{tmp}",
          "onnxruntime-node"]],
    )  # fmt: skip
    if failure is None:
        return node, place
    return (
        f"could not install onnxruntime-node ({failure}); run: npm install --ignore-scripts "
        f"--prefix {place} onnxruntime-node"
    )
