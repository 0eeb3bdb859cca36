"""The benchmark's report as Markdown: the tables of :mod:`jobs.benchmark.report`'s figures."""

from __future__ import annotations

from typing import Any

from jobs.benchmark.report import (
    BIG,
    ORT,
    apart_scaling,
    bound_by_round,
    cpu_per_million,
    grown_by,
    marginal,
    median_of,
    peer_rate,
    ratios,
    targets,
)

__all__ = ["render_cluster", "render_markdown", "render_tree_forms"]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Benchmark: `{report['command']}`", "",
             f"Machine: {report['machine']}. Medians of the timed runs. Per core: rows per "
             "CPU-second of the JVM and its Python workers; wall: rows per second.", ""]  # fmt: skip
    runs, pairs = report["runs"], report.get("scaling_pairs")
    gcs = {f"{r['cores']} core(s): {', '.join(r['gc'])}" for r in runs if r.get("gc")}
    if gcs:
        lines[-1:] = [f"The JVM's collectors: {'; '.join(sorted(gcs))}.", ""]
    models = list(runs[0]["models"]) if runs else []
    for model in models:
        lines += [f"## {model}", "", "| peer | " + " | ".join(
            f"{r['cores']} core(s): per core (wall)" for r in runs) + " |",
            "|---|" + "---|" * len(runs)]  # fmt: skip
        names = list(runs[0]["models"][model]["peers"])
        for name in names:
            cells = []
            for r in runs:
                got = r["models"][model]["peers"].get(name, {})
                if not got:
                    cells.append("-")
                elif "rows_per_s" in got:
                    per_core = peer_rate(r["models"][model]["peers"], name, r["cores"])
                    cells.append(f"{_fmt(per_core)} ({_fmt(float(got['rows_per_s']))})")
                else:
                    cells.append(f"fails: {got['error']}")
            label = f"{name} (no Spark: ORT alone, 1 thread)" if name == ORT else name
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for key in ("ort_rows_per_s", "ort_strings_rows_per_s", "ort_ensemble_rows_per_s",
                    "sklearn_rows_per_s", "ceiling_rows_per_s"):
            cells = [_fmt(r["models"][model]["in_process"].get(key)) for r in runs]
            lines.append(f"| {key.removesuffix('_rows_per_s')} (1 thread, no Spark, after "
                         "the rounds: wall) | "
                         + " | ".join(cells) + " |")  # fmt: skip
        lines += ["", "| ratio | " + " | ".join(f"{r['cores']} core(s)" for r in runs) + " |",
                  "|---|" + "---|" * len(runs)]  # fmt: skip
        table = [ratios(r, model) for r in runs]
        for key in table[0]:
            lines.append(f"| {key} | " + " | ".join(_fmt(t[key]) for t in table) + " |")
        rounds = bound_by_round(runs[0], model)
        if rounds:
            lines.append(f"| job_vs_bound round by round ({runs[0]['cores']} core(s)) | "
                         f"{', '.join(f'{r:.2f}' for r in rounds)} |")  # fmt: skip
        for peer in ("job", "floor_arrow", "handwritten_onnx", "job" + BIG, "floor_arrow" + BIG):
            grown, text = grown_by(runs, pairs, model, peer)
            if grown is not None:
                lines.append(f"| {peer} scaling {runs[0]['cores']} → {runs[-1]['cores']} cores "
                             f"(wall) | {text} |")  # fmt: skip
        machine, versus = apart_scaling(pairs or [], report.get("scaling_apart") or [], model)
        if machine:
            many = runs[-1]["cores"]
            lines += [f"| job: {many} one-core sessions at once over one (this machine's own "
                      f"scaling) | {median_of(machine)} |",
                      f"| job: local[{many}] over those {many} sessions at once | "
                      f"{median_of(versus)} |"]  # fmt: skip
        judged = targets(runs, model, pairs)
        if judged:
            lines += ["", "Targets (1 core; met or not on the ratio per run; the speed issue states "
                      "them for the RF, on another model they compare):", "",
                      "| target | per run | per row | |", "|---|---|---|---|"]  # fmt: skip
            lines += [f"| {what} | {_fmt(run)} | {_fmt(row)} | {verdict} |"
                      for what, run, row, verdict in judged]  # fmt: skip
        apart = marginal(runs[0], model)
        if apart:
            lines += ["", f"Per row and per run ({runs[0]['cores']} core(s), from the two sizes: "
                      "rows per CPU-second past the fixed cost; the fixed cost in CPU-seconds):",
                      "", "| figure | value |", "|---|---|"]  # fmt: skip
            lines += [f"| {k} | {_fmt(v)} |" for k, v in apart.items()]
        split = cpu_per_million(runs[0]["models"][model]["peers"])
        if split:
            lines += ["", f"Where the CPU goes ({runs[0]['cores']} core(s)): CPU-seconds per 1M "
                      "rows by process; the JVM scans, casts, validates, moves Arrow batches "
                      "and writes Parquet, the workers convert and score:", "",
                      "| peer | driver | JVM | Python workers |", "|---|---|---|---|"]  # fmt: skip
            lines += [f"| {name} | {got['driver']:.2f} | {got['jvm']:.2f} | {got['workers']:.2f} |"
                      for name, got in split.items()]  # fmt: skip
        profile = runs[0]["models"][model]["in_process"]["profile_ms_per_10k"]
        lines += ["", "One 10k-row batch through the job's worker steps, in one process, ms "
                  "(parquet_write is pyarrow's; Spark's writer runs in the JVM): " + ", ".join(
            f"{k} {v}" for k, v in profile.items()), ""]  # fmt: skip
    forms = next((r["tree_forms"] for r in runs if r.get("tree_forms")), None)
    if forms:
        lines += render_tree_forms(forms)
    return "\n".join(lines) + "\n"


def render_tree_forms(forms: list[dict[str, Any]]) -> list[str]:
    """jobs.benchmark.trees: the tree ensemble against the matmul form as the trees grow."""
    lines = ["## Tree forms", "",
             "ONNX Runtime alone, 1 thread, 10k-row batches, 50 trees on 11 features "
             "(jobs/_bench_trees.py): ns per row with the ai.onnx.ml tree ensemble and with the "
             "matrix-product form (formats.onnx.trees_matmul); `trees=\"auto\"` rewrites up "
             "to the mean splits per tree it names. One row: the latency of a call with a "
             "single row.", "",
             "| model | splits per tree | ensemble ns/row | matmul ns/row | matmul speedup "
             "| one row: ensemble us | one row: matmul us |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {f['kind']} | {f['splits']} | {f['ensemble_ns_per_row']} | "
              f"{f['matmul_ns_per_row']} | {f['speedup']:.2f}x | "
              f"{f.get('ensemble_one_row_us', '-')} | {f.get('matmul_one_row_us', '-')} |"
              for f in forms]  # fmt: skip
    return [*lines, ""]


def _workers(by_workers: dict[Any, Any], n: int) -> dict[str, Any]:
    """One cluster's {model: peers} of a pair ({"1": ..., "2": ...}; int keys before JSON)."""
    got: dict[str, Any] = by_workers.get(str(n), by_workers.get(n, {}))
    return got


def _cluster_runs(by_workers: dict[Any, Any]) -> list[dict[str, Any]]:
    """One pair of clusters as a pair of the local report's runs, so that one :func:`grown`
    judges both."""
    return [{"cores": n, "models": {model: {"peers": peers}
                                    for model, peers in _workers(by_workers, n).items()}}
            for n in (1, 2)]  # fmt: skip


def render_cluster(report: dict[str, Any]) -> str:
    """``--cluster``: wall-clock rows/s with 1 and 2 one-core workers, and the scaling."""
    result = report["cluster"]
    lines = [f"# Cluster scaling: `{report['command']}`", "",
             f"Machine: {report['machine']}. A standalone master and one-core workers on "
             f"127.0.0.1, each worker pinned to its own core; {result['rows']:,} rows; medians, "
             "wall-clock rows/s (of the first pair of clusters; the scaling over every pair).",
             "",
             "| model | peer | 1 worker | 2 workers | scaling |", "|---|---|---|---|---|"]  # fmt: skip
    by_workers = result["workers"]
    one, two = _workers(by_workers, 1), _workers(by_workers, 2)
    first, pairs = _cluster_runs(by_workers), [_cluster_runs(p) for p in result.get("pairs", [])]
    for model, peers in one.items():
        for name, got in peers.items():
            other = two.get(model, {}).get(name, {})
            a, b = got.get("rows_per_s"), other.get("rows_per_s")
            grown = grown_by(first, pairs, model, name)[1]
            cells = [_fmt(float(a)) if a else got.get("error", "-"),
                     _fmt(float(b)) if b else other.get("error", "-")]  # fmt: skip
            lines.append(f"| {model} | {name} | {cells[0]} | {cells[1]} | {grown} |")
    return "\n".join(lines) + "\n"
