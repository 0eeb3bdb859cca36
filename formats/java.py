"""Java, which sklearn2pmml, pypmml, JPMML-Evaluator and Spark all need: found, or one line."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

from formats.errors import MissingDependencyError

__all__ = ["java_version"]

INSTALL_HINT = (
    "modelport needs Java 17 or newer: install it (Debian/Ubuntu: apt-get install -y openjdk-17-jdk-headless; "
    "macOS: brew install openjdk@17) and put java on the PATH or set JAVA_HOME"
)


@functools.cache
def java_version() -> str:
    """The version line of the java that the JVM-based engines will start, or an error."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise MissingDependencyError(f"Java was not found; {INSTALL_HINT}")
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependencyError(f"{java} -version failed ({exc}); {INSTALL_HINT}") from None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise MissingDependencyError(f"{java} -version failed; {INSTALL_HINT}")
    found = re.search(r'version "(\d+)(?:\.(\d+))?', lines[0])
    if found:
        major = int(found.group(1))
        major = int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8
        if major < 17:
            raise MissingDependencyError(f"Java {major} found at {java}; {INSTALL_HINT}")
    return lines[0]
