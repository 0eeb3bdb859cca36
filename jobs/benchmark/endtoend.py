"""The end-to-end benchmark: whole cold processes, as a user times them.

Each run is one ``spark-submit`` of the job (``jobs/score.py``) or of a peer script
(:mod:`jobs.benchmark.scripts.udf`), started fresh, timed from launch to exit; peers are
interleaved run by run (the order rotating), so a machine that gets busier shifts them alike,
and the medians are reported. Beside each whole-process time stands the process's own time for
its scoring action (the job's summary ``score and write`` phase; the scripts' write), which is
what in-session figures measure. Every output is counted: a peer that lost rows fails the run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PEERS", "end_to_end", "render"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "jobs/benchmark/scripts/udf.py"
LOG4J = "-Dlog4j2.configurationFile=conf/spark/log4j2.properties"
# the job, then what a user writes instead (jobs/benchmark/scripts/udf.py)
PEERS = ("job", "tuned", "guide", "pickle")
LABELS = {
    "job": "modelport (spark-submit jobs/score.py)",
    "tuned": "hand-written ONNX UDF, 1 ORT thread per task",
    "guide": "hand-written ONNX UDF, ORT's default threads (the guides')",
    "pickle": "hand-written pickle pandas UDF",
}


def _command(peer: str, cores: int, pinned: bool, data: Path, bundle: Path,
             out: Path) -> list[str]:  # fmt: skip
    """``job@NAME`` is the job of another checkout (run in it: ``--code NAME=DIR``)."""
    import pyspark

    submit = str(Path(pyspark.__file__).parent / "bin" / "spark-submit")
    cmd = [submit, "--properties-file", "conf/spark/local.conf", "--master", f"local[{cores}]",
           "--conf", "spark.ui.enabled=false", "--conf", "spark.ui.showConsoleProgress=false"]
    io = ["--bundle", str(bundle), "--input", str(data), "--output", str(out)]
    if peer.partition("@")[0] == "job":
        cmd += ["jobs/score.py", "--conf", "conf/local.toml", *io, "--set", "output.mode=overwrite"]
    else:  # as a user runs them: Spark's own JVM start, without the job's class archive
        cmd += ["--conf", f"spark.driver.extraJavaOptions={LOG4J}", SCRIPT, "--peer", peer, *io]
    if pinned:
        cpus = sorted(os.sched_getaffinity(0))[:cores]
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    return cmd


def _rows(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in out.glob("*.parquet"))


def _one(peer: str, cores: int, pinned: bool, data: Path, bundle: Path, out: Path,
         rows: int, code: dict[str, Path]) -> dict[str, Any]:  # fmt: skip
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    where = code.get(peer.partition("@")[2], ROOT)
    if where != ROOT:  # another checkout's code, the same interpreter and packages
        env["PYTHONPATH"] = str(where)
    start = time.perf_counter()
    done = subprocess.run(_command(peer, cores, pinned, data, bundle, out), cwd=where, env=env,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:300]}"}
    written = _rows(out)
    if written != rows:
        return {"error": f"wrote {written} rows of {rows}"}
    if peer.partition("@")[0] == "job":
        summary = json.loads((out / "_modelport_summary.json").read_text())
        inside = float(summary.get("phases", {}).get("score and write", summary["seconds"]))
    else:
        inside = float(json.loads(done.stdout.strip().splitlines()[-1])["write_s"])
    return {"wall_s": round(wall, 3), "in_process_s": round(inside, 3)}


def end_to_end(
    sizes: Sequence[int],
    modes: Sequence[tuple[int, bool]],
    repeats: int,
    work: Path,
    peers: Sequence[str] = PEERS,
    say: Callable[[str], None] = lambda _m: None,
    code: dict[str, Path] | None = None,
) -> list[dict[str, Any]]:
    """Every peer at every size and mode ((cores, pinned)), ``repeats`` interleaved runs each.
    ``code`` names other checkouts: the peer ``job@NAME`` is the job of ``code[NAME]``, so a
    change is timed against the code before it in the same interleaved runs."""
    from formats import save
    from jobs.datagen import generate
    from jobs.export import train

    bundle = work / "bundle-rf"
    if not (bundle / "manifest.json").exists():
        pipeline, x_train = train("rf")
        save(pipeline, bundle, sample=x_train, name="penguins-rf", overwrite=True)
    results = []
    for rows in sizes:
        data = work / f"data-{rows}"
        if not data.exists():
            generate(rows, data)
        for cores, pinned in modes:
            runs: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
            for r in range(repeats):
                order = list(peers[r % len(peers):]) + list(peers[: r % len(peers)])
                for peer in order:
                    got = _one(peer, cores, pinned, data, bundle, work / f"out-{peer}", rows,
                               code or {})
                    say(f"end-to-end {rows:,} rows local[{cores}]{' pinned' if pinned else ''} "
                        f"{peer}: {got}")  # fmt: skip
                    runs[peer].append(got)
            results.append({"rows": rows, "cores": cores, "pinned": pinned,
                            "peers": {p: _medians(v) for p, v in runs.items()}})  # fmt: skip
    return results


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r["error"] for r in runs if "error" in r]
    if failed:
        return {"error": failed[0], "runs": runs}
    return {"wall_s": statistics.median(r["wall_s"] for r in runs),
            "in_process_s": statistics.median(r["in_process_s"] for r in runs),
            "runs": [r["wall_s"] for r in runs]}  # fmt: skip


def _ratio(peers: dict[str, Any], other: str) -> str:
    """The job's wall time over ``other``'s, as text ("-" where either is missing)."""
    a, b = peers.get("job", {}).get("wall_s"), peers.get(other, {}).get("wall_s")
    return f"{a / b:.2f}" if a and b else "-"


def render(results: list[dict[str, Any]], command: str) -> str:
    """The Markdown table: median wall per peer, its in-process time, the job's ratios."""
    names = list(dict.fromkeys(p for r in results for p in r["peers"]))
    lines = ["## End to end: whole cold spark-submit runs (median wall s; in-process s)", "",
             f"`{command}`", "",
             "| rows | master | " + " | ".join(names) + " | job / tuned | job / pickle |",
             "|---" * (len(names) + 4) + "|"]  # fmt: skip
    for r in results:
        cells, peers = [], r["peers"]
        for p in names:
            got = peers.get(p, {})
            cells.append(f"{got['wall_s']:.1f} ({got['in_process_s']:.1f})" if "wall_s" in got
                         else got.get("error", "-"))  # fmt: skip
        master = f"local[{r['cores']}]" + (" pinned" if r["pinned"] else "")
        lines.append(f"| {r['rows']:,} | {master} | " + " | ".join(cells)
                     + f" | {_ratio(peers, 'tuned')} | {_ratio(peers, 'pickle')} |")  # fmt: skip
    lines += ["", "Peers: " + "; ".join(f"`{p}` {LABELS.get(p, 'the job of checkout ' + p.partition('@')[2])}"
                                        for p in names) + ".",
              "A ratio below 1 is the job faster (whole process, wall)."]  # fmt: skip
    return "\n".join(lines) + "\n"
