"""What spark-submit ships to a cluster: our code (``--py-files``) and a packed Python
environment (``--archives env.tar.gz#environment``).

The environment is a *slim* venv, not the project's ``.venv``: the executors need only what
scoring imports (``RUNTIME`` and their dependencies), while ``.venv`` carries torch, TensorFlow,
CatBoost, XGBoost and Spark's own jars (5.6 GB on disk; venv-pack took about 7 minutes on two
cores and wrote a 2.3 GB archive that every executor would fetch and unpack). The slim one is
built once into ``build/cluster-env`` with the driver's exact versions (a constraints file
from this venv, so a pickled Arrow batch or numpy array means the same thing on both sides),
and packed only when it changed.

pyspark is not in it: a Spark worker puts its own ``python/lib/pyspark.zip`` and py4j on the
Python workers' PYTHONPATH (pip's pyspark ships both), so the executors always run the pyspark
of the Spark that runs them. modelport itself is not in it either: it travels as the
``--py-files`` zip, so a change to our code needs no new environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from formats.errors import MissingExtraError, ModelportError

__all__ = ["EXCLUDE", "RUNTIME", "Packaged", "build_env", "code_zip", "package"]

ROOT = Path(__file__).resolve().parents[2]
# What the executors import: onnx because formats.onnx (the scorer's package) loads it.
RUNTIME = ("numpy", "pandas", "pyarrow", "onnxruntime", "onnx")
CODE_PACKAGES = ("formats", "jobs")
# Never needed at run time; tests dirs alone are ~60 MB of the slim env.
EXCLUDE = (
    "lib/python*/site-packages/pip/*",
    "lib/python*/site-packages/pip-*",
    "lib/python*/site-packages/setuptools/*",
    "lib/python*/site-packages/*/tests/*",
    "lib/python*/site-packages/*/*/tests/*",
    "lib/python*/site-packages/onnx/backend/test/*",
    "bin/pip*",
    ".modelport-env.json",  # _STAMP: what the venv was built from, for this machine only
)
_STAMP = ".modelport-env.json"


@dataclass(frozen=True)
class Packaged:
    code: Path
    env: Path
    env_bytes: int
    pack_seconds: float  # 0 when the archive was up to date
    env_seconds: float  # building the slim venv; 0 when it was up to date


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def code_zip(dist: Path) -> Path:
    """formats/ and jobs/ (sources and py.typed) as one zip for ``--py-files``."""
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / "modelport-code.zip"
    fd, tmp = tempfile.mkstemp(prefix=".code.", suffix=".zip", dir=dist)
    with open(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in CODE_PACKAGES:
            for path in sorted((ROOT / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and (
                    path.suffix == ".py" or path.name == "py.typed"
                ):
                    zf.write(path, path.relative_to(ROOT).as_posix())
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep other users (and their executors) out
    Path(tmp).replace(target)
    return target


def _pins() -> list[str]:
    """This venv's version of every installed distribution but modelport (pip constraints)."""
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "modelport":
            pins[name.lower()] = f"{name}=={dist.version}"
    return sorted(pins.values())


def _wanted() -> dict[str, object]:
    try:
        runtime = [f"{name}=={metadata.version(name)}" for name in RUNTIME]
    except metadata.PackageNotFoundError as exc:
        raise ModelportError(f"{exc.name} is not installed in {sys.prefix}; run make setup") from None
    return {"python": sys.version.split()[0], "runtime": runtime, "constraints": _pins()}


def build_env(env_dir: Path) -> tuple[str, float]:
    """The slim venv at ``env_dir`` (reused when its stamp matches); (its stamp, seconds)."""
    wanted = json.dumps(_wanted(), indent=1, sort_keys=True)
    stamp = env_dir / _STAMP
    if stamp.is_file() and stamp.read_text() == wanted:
        return wanted, 0.0
    start = time.perf_counter()
    if env_dir.exists():
        shutil.rmtree(env_dir)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    runtime: list[str] = json.loads(wanted)["runtime"]
    _run([sys.executable, "-m", "venv", str(env_dir)])
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="constraints.") as fh:
        fh.write("\n".join(json.loads(wanted)["constraints"]) + "\n")
        fh.flush()
        pip = [str(env_dir / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
        _run([*pip, "install", "-c", fh.name, *runtime])
    stamp.write_text(wanted)  # last: a half-built venv has no stamp and is rebuilt
    return wanted, time.perf_counter() - start


def _run(cmd: list[str]) -> None:
    _say(" ".join(cmd))
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        # pip warns about this machine's missing local package folders: not the failure
        lines = [ln for ln in done.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
        last = lines[-1] if lines else f"exit {done.returncode}"
        raise ModelportError(f"{cmd[0]} {' '.join(cmd[1:4])} ... failed: {last}")


def _pack(env_dir: Path, target: Path) -> None:
    try:
        import venv_pack
    except ImportError:
        raise MissingExtraError("venv-pack", "cluster") from None
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    _say(f"venv-pack -p {env_dir} -o {target} " + " ".join(f"--exclude '{e}'" for e in EXCLUDE))
    filters = [("exclude", pattern) for pattern in EXCLUDE]
    venv_pack.pack(prefix=str(env_dir), output=str(tmp), format="tar.gz", filters=filters)
    os.chmod(tmp, 0o644)
    tmp.replace(target)


def package(dist: Path, env_dir: Path) -> Packaged:
    """The code zip (always rebuilt: it is small) and the packed env (when the env changed)."""
    code = code_zip(dist)
    _say(f"wrote {code} ({code.stat().st_size / 1e6:.1f} MB)")
    wanted, env_seconds = build_env(env_dir)
    target = dist / "env.tar.gz"
    packed_for = dist / ".env.tar.gz.sha256"
    # what is in the venv and what is left out of the archive: a change to either repacks
    digest = hashlib.sha256((wanted + json.dumps(EXCLUDE)).encode()).hexdigest()
    seconds = 0.0
    if not target.is_file() or not packed_for.is_file() or packed_for.read_text() != digest:
        start = time.perf_counter()
        _pack(env_dir, target)
        seconds = time.perf_counter() - start
        packed_for.write_text(digest)
        _say(f"packed {target} ({target.stat().st_size / 1e6:.0f} MB) in {seconds:.0f} s")
    else:
        _say(f"{target} is up to date ({target.stat().st_size / 1e6:.0f} MB)")
    return Packaged(code, target, target.stat().st_size, seconds, env_seconds)
