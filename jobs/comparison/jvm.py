"""The JVM half of the Spark comparison: ``jobs/java/modelport/PmmlUdf.java`` compiled into a jar.

    python -m jobs.comparison.jvm [--cache .cache/jvm]      # prints the jars Spark needs, one a line

The UDF is compiled with javac against the jars pyspark ships (Spark's API, Scala's library)
and the two JPMML-Evaluator jars the ``jpmml_evaluator`` package ships (pmml-model and
pmml-evaluator: pure Java, so nothing clashes with Spark's Scala 2.13; pypmml's PMML4S is Scala
and brings its own scala-library, which is why it is not the engine used here). Everything else
those two need (JAXB, Guava, commons-math3, SLF4J) is already among Spark's jars, so only the
UDF jar and those two travel with the job.

The jar lands in ``.cache/jvm/`` under a name keyed by a hash of the source and of the jars it
was compiled against: a new pyspark or jpmml_evaluator, or an edited source, builds a new one;
otherwise the build is a file lookup. A missing javac is a :class:`MissingDependencyError`
naming what to install (exit 2 from the command line).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from formats.errors import MissingDependencyError, ModelportError

__all__ = ["CACHE_ENV", "JAVAC_ENV", "UDF_CLASS", "UdfJars", "build", "find_javac", "main"]

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "jobs" / "java" / "modelport" / "PmmlUdf.java"
UDF_CLASS = "modelport.PmmlUdf"
DEFAULT_CACHE = ROOT / ".cache" / "jvm"
CACHE_ENV = "MODELPORT_JVM_CACHE"  # another cache directory (the tests use a fresh one)
# An explicit javac (a path); set to a path that does not exist to see the missing-javac cell.
JAVAC_ENV = "MODELPORT_JAVAC"
# The JPMML-Evaluator artifacts the UDF runs on; their own dependencies are among Spark's jars.
PMML_ARTIFACTS = ("pmml-model", "pmml-evaluator")
INSTALL_HINT = (
    "the PMML Java UDF needs javac (a JDK, not only a JRE): install it (Debian/Ubuntu: "
    "apt-get install -y openjdk-17-jdk-headless) and put javac on the PATH, set JAVA_HOME, "
    f"or set {JAVAC_ENV}"
)


@dataclass(frozen=True)
class UdfJars:
    udf: Path  # the compiled UDF
    pmml: tuple[Path, ...]  # pmml-model and pmml-evaluator, as jpmml_evaluator ships them

    @property
    def all(self) -> tuple[Path, ...]:
        return (self.udf, *self.pmml)


def find_javac() -> str:
    """``$MODELPORT_JAVAC``, else ``$JAVA_HOME/bin/javac``, else javac on the PATH."""
    explicit = os.environ.get(JAVAC_ENV)
    if explicit is not None:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise MissingDependencyError(f"javac not found at {JAVAC_ENV}={explicit!r}; {INSTALL_HINT}")
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "javac"), os.X_OK):
        return os.path.join(home, "bin", "javac")
    found = shutil.which("javac")
    if not found:
        raise MissingDependencyError(f"javac not found; {INSTALL_HINT}")
    return found


def spark_jars_dir() -> Path:
    """The jars of the pyspark this python imports (the Spark the job runs on)."""
    import pyspark

    here = Path(pyspark.__file__).resolve().parent / "jars"
    if here.is_dir():
        return here
    home = os.environ.get("SPARK_HOME")
    if home and (Path(home) / "jars").is_dir():
        return Path(home) / "jars"
    raise MissingDependencyError(
        "pyspark's jars were not found; install pyspark (modelport[spark])"
    )


def pmml_jars() -> tuple[Path, ...]:
    try:
        import jpmml_evaluator
    except ImportError:
        raise MissingDependencyError(
            "the PMML Java UDF runs JPMML-Evaluator: pip install jpmml_evaluator"
        ) from None
    where = Path(jpmml_evaluator.__file__).resolve().parent / "dependencies"
    jars = sorted(where.glob("*.jar"))
    chosen = []
    for artifact in PMML_ARTIFACTS:
        match = [j for j in jars if _artifact(j.name) == artifact]
        if not match:
            raise MissingDependencyError(
                f"jpmml_evaluator ships no {artifact} jar in {where}; reinstall jpmml_evaluator"
            )
        chosen.append(match[-1])
    return tuple(chosen)


def _artifact(name: str) -> str:
    """``pmml-model-1.7.7.jar`` -> ``pmml-model`` (the version starts at the first -digit)."""
    parts = name.removesuffix(".jar").split("-")
    for i, part in enumerate(parts):
        if part[:1].isdigit():
            return "-".join(parts[:i])
    return "-".join(parts)


def _key(source: bytes, spark_dir: Path, pmml: Sequence[Path]) -> str:
    h = hashlib.sha256(source)
    for jar in [*sorted(p.name for p in spark_dir.glob("*.jar")), *(p.name for p in pmml)]:
        h.update(b"\0" + jar.encode())
    return h.hexdigest()[:16]


def build(cache_dir: str | Path | None = None) -> UdfJars:
    """The UDF jar (compiled now, or found in the cache) and the PMML jars it runs on."""
    spark_dir = spark_jars_dir()
    pmml = pmml_jars()
    source = SOURCE.read_bytes()
    cache = Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    jar = cache / f"modelport-pmml-udf-{_key(source, spark_dir, pmml)}.jar"
    if jar.is_file():
        return UdfJars(jar, pmml)
    javac = find_javac()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelport-javac-") as tmp:
        classes = Path(tmp) / "classes"
        classpath = os.pathsep.join([str(spark_dir / "*"), *map(str, pmml)])
        command = [javac, "--release", "17", "-nowarn", "-d", str(classes), "-cp", classpath,
                   str(SOURCE)]  # fmt: skip
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MissingDependencyError(f"{javac} could not run ({exc}); {INSTALL_HINT}") from None
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr)
            raise ModelportError(f"javac failed on {SOURCE.name}: {first.strip()[:300]}")
        partial = jar.with_suffix(f".{os.getpid()}.tmp")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out:
            out.writestr(
                "META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: modelport\r\n\r\n"
            )
            for path in sorted(classes.rglob("*.class")):
                out.write(path, path.relative_to(classes).as_posix())
        partial.replace(jar)  # whole or absent: a concurrent build writes the same bytes
    return UdfJars(jar, pmml)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.comparison.jvm", description=__doc__.split("\n")[0])
    p.add_argument("--cache", help=f"where the jar is kept (default ${CACHE_ENV}, else .cache/jvm)")
    args = p.parse_args(argv)
    try:
        jars = build(args.cache)
    except ModelportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for jar in jars.all:
        print(jar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
