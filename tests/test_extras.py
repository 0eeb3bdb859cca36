"""A missing framework extra is an install hint (exit 2), never an ImportError traceback; so is a
missing core dependency (a broken install: the hint is to reinstall modelport).

Each case runs the real CLI in a subprocess where an import hook makes the framework missing,
as on a machine where that extra was never installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.onnx_models import doubler

RUNNER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Missing())
sys.argv = ["formats"] + sys.argv[2:]
from formats.cli import main
main()
"""


def run_without(blocked: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, blocked, *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    (tmp_path / "model.pt").write_bytes(b"not really a torch file")
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:  # a .keras file's layout
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
    import onnx

    onnx.save(doubler(), str(tmp_path / "model.onnx"))
    return tmp_path


REINSTALL = "pip install --force-reinstall modelport"


@pytest.mark.parametrize(
    ("blocked", "args", "hint"),
    [
        ("torch", ["convert", "model.pt", "--sample", "x.npy"], "pip install 'modelport[torch]'"),
        ("tensorflow,keras", ["convert", "model.keras"], "pip install 'modelport[keras]'"),
        ("xgboost", ["convert", "model.ubj", "--sample", "x.npy"], "install 'modelport[xgboost]'"),
        ("netron", ["view", "model.onnx", "--no-browser"], "pip install 'modelport[view]'"),
        # scikit-learn and skl2onnx are dependencies of modelport itself, not extras (pandas
        # too, but `import formats` needs it, like numpy: a missing one is a broken install)
        ("sklearn,skl2onnx", ["convert", "model.pkl", "--sample", "x.npy"], REINSTALL),
    ],
)
def test_missing_extra_gives_an_install_hint(
    files: Path, blocked: str, args: list[str], hint: str
) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), files / "model.pkl")
    (files / "model.ubj").write_bytes(b"{}")
    (files / "rows.csv").write_text("x_0,x_1,x_2\n1,2,3\n")
    proc = run_without(blocked, *args, cwd=files)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert hint in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
