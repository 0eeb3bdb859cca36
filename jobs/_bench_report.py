"""The benchmark's results as Markdown: per-core rows/s of every peer, and the ratios the
targets are stated in."""

from __future__ import annotations

from typing import Any

__all__ = ["ratios", "render_markdown"]


def _rate(peers: dict[str, Any], name: str, cores: int) -> float | None:
    got = peers.get(name, {})
    rate = got.get("rows_per_s")
    return None if rate is None else float(rate) / cores


def ratios(run: dict[str, Any], model: str) -> dict[str, float | None]:
    """The target ratios of one core count and model (None where a peer did not run)."""
    cores = int(run["cores"])
    result = run["models"][model]
    peers, local = result["peers"], result["in_process"]
    job = _rate(peers, "job", cores)
    floor = _rate(peers, "floor_arrow", cores)
    ort = float(local["ort_rows_per_s"])
    bound = 1 / (1 / floor + 1 / ort) if floor else None

    def over(name: str) -> float | None:
        other = _rate(peers, name, cores)
        return round(job / other, 2) if job and other else None

    return {
        "job_per_core": job,
        "bound_per_core": round(bound, 1) if bound else None,
        "job_vs_bound": round(job / bound, 2) if job and bound else None,
        "job_vs_handwritten_onnx": over("handwritten_onnx"),
        "job_vs_predict_batch_udf": over("predict_batch_udf"),
        "job_vs_pickle_pandas": over("pickle_pandas"),
        "job_vs_mlflow_pickle": over("mlflow_pickle"),
        "job_vs_pypmml": over("pypmml_pandas"),
        "job_vs_row_at_a_time": over("row_at_a_time"),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Benchmark: `{report['command']}`", "",
             f"Machine: {report['machine']}. Medians of the timed runs; rows/s per core.", ""]  # fmt: skip
    runs = report["runs"]
    models = list(runs[0]["models"]) if runs else []
    for model in models:
        lines += [f"## {model}", "", "| peer | " + " | ".join(
            f"{r['cores']} core(s) rows/s/core" for r in runs) + " |",
            "|---|" + "---|" * len(runs)]  # fmt: skip
        names = list(runs[0]["models"][model]["peers"])
        for name in names:
            cells = []
            for r in runs:
                got = r["models"][model]["peers"].get(name, {})
                if not got:
                    cells.append("-")
                elif "rows_per_s" in got:
                    cells.append(_fmt(got["rows_per_s"] / r["cores"]))
                else:
                    cells.append(f"fails: {got['error']}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for key in ("ort_rows_per_s", "ceiling_rows_per_s"):
            cells = [_fmt(float(r["models"][model]["in_process"][key])) for r in runs]
            lines.append(f"| {key.removesuffix('_rows_per_s')} (1 thread, no Spark) | "
                         + " | ".join(cells) + " |")  # fmt: skip
        lines += ["", "| ratio | " + " | ".join(f"{r['cores']} core(s)" for r in runs) + " |",
                  "|---|" + "---|" * len(runs)]  # fmt: skip
        table = [ratios(r, model) for r in runs]
        for key in table[0]:
            lines.append(f"| {key} | " + " | ".join(_fmt(t[key]) for t in table) + " |")
        if len(runs) > 1:
            one = _rate(runs[0]["models"][model]["peers"], "job", 1)
            two = runs[-1]["models"][model]["peers"].get("job", {}).get("rows_per_s")
            if one and two:
                lines.append(f"| job scaling {runs[0]['cores']} → {runs[-1]['cores']} cores | "
                             f"{float(two) / (one * runs[0]['cores']):.2f}x |")  # fmt: skip
        profile = runs[0]["models"][model]["in_process"]["profile_ms_per_10k"]
        lines += ["", "One 10k-row batch in the worker, ms: " + ", ".join(
            f"{k} {v}" for k, v in profile.items()), ""]  # fmt: skip
    return "\n".join(lines) + "\n"
