"""The benchmark's figures from its results: per-core rows/s of every peer, and the ratios the
targets are stated in (rendered by :mod:`jobs.benchmark.render`)."""

from __future__ import annotations

import statistics
from typing import Any

__all__ = [
    "BIG", "ORT", "TARGETS", "apart_scaling", "bound_by_round", "cpu_per_million", "marginal",
    "paired_scaling", "ratios", "scaling", "targets",
]  # fmt: skip

BIG = "@big"  # the suffix of a peer's run on the --marginal-rows data
ORT = "ort"  # the rounds' peer without Spark: ONNX Runtime alone on the data's batches


def peer_rate(peers: dict[str, Any], name: str, cores: int) -> float | None:
    """Rows per CPU-second of the process tree (per core); older results: wall rows/s / cores."""
    got = peers.get(name, {})
    if got.get("rows_per_cpu_s") is not None:
        return float(got["rows_per_cpu_s"])
    rate = got.get("rows_per_s")
    return None if rate is None else float(rate) / cores


def _ort(peers: dict[str, Any], local: dict[str, Any], cores: int) -> float:
    """The bound's ORT rate: the rounds' ``ort`` (rows per CPU-second, timed beside the Spark
    peers) where the run has it, else the one measured alone after the rounds (older runs)."""
    rate = peer_rate(peers, ORT, cores)
    return rate if rate is not None else float(local["ort_rows_per_s"])


def _bound(floor: float | None, ort: float) -> float | None:
    return 1 / (1 / floor + 1 / ort) if floor else None


def ratios(run: dict[str, Any], model: str) -> dict[str, float | None]:
    """The target ratios of one core count and model (None where a peer did not run)."""
    cores = int(run["cores"])
    result = run["models"][model]
    peers, local = result["peers"], result["in_process"]
    job = peer_rate(peers, "job", cores)
    ort = _ort(peers, local, cores)
    alone = float(local["ort_rows_per_s"])  # beside sklearn's and the other forms', after the rounds
    bound = _bound(peer_rate(peers, "floor_arrow", cores), ort)
    bound_output = _bound(peer_rate(peers, "floor_output", cores), ort)
    sklearn = local.get("sklearn_rows_per_s")
    pickle_rate = peer_rate(peers, "pickle_pandas", cores)

    def over(name: str) -> float | None:
        other = peer_rate(peers, name, cores)
        return round(job / other, 2) if job and other else None

    return {
        "job_per_core": job,
        "bound_per_core": round(bound, 1) if bound else None,
        "job_vs_bound": round(job / bound, 2) if job and bound else None,
        "bound_output_per_core": round(bound_output, 1) if bound_output else None,
        "job_vs_bound_output": round(job / bound_output, 2) if job and bound_output else None,
        # the job against itself without conversions, validation and observations
        "job_vs_floor_ort": over("floor_ort"),
        "ort_in_worker_vs_alone": _in_worker(peers, ort),
        # the category codes (formats.onnx.string_codes) against the job feeding strings
        "job_vs_job_strings": over("job_strings"),
        "job_vs_handwritten_onnx": over("handwritten_onnx"),
        "job_vs_predict_batch_udf": over("predict_batch_udf"),
        "job_vs_pickle_pandas": over("pickle_pandas"),
        # what an ORT job adding nothing to Spark's transfer and write (bound_output) would
        # reach against the pickle UDF: the most the job can be ahead of it on this model
        "best_job_vs_pickle_pandas": round(bound_output / pickle_rate, 2)
        if bound_output and pickle_rate else None,
        "ort_vs_sklearn": round(alone / float(sklearn), 2) if sklearn else None,
        # the model as the job runs it (string columns as int32 codes, the label as a class
        # index) over model.onnx as saved, on strings
        "ort_codes_vs_strings": round(alone / float(local["ort_strings_rows_per_s"]), 2)
        if local.get("ort_strings_rows_per_s") else None,
        # the bundle's trees as matrix products over ai.onnx.ml tree ensembles, ORT alone, both
        # fed strings (model.onnx as saved: ort_strings where the job's model takes codes)
        "ort_matmul_vs_ensemble": round(
            float(local.get("ort_strings_rows_per_s") or alone)
            / float(local["ort_ensemble_rows_per_s"]), 2)
        if local.get("ort_ensemble_rows_per_s") else None,
        "job_vs_mlflow_pickle": over("mlflow_pickle"),
        "job_vs_pypmml": over("pypmml_pandas"),
        "job_vs_row_at_a_time": over("row_at_a_time"),
    }


def _in_worker(peers: dict[str, Any], ort: float) -> float | None:
    """ORT's rows per CPU-second inside a Spark worker (floor_ort's CPU over floor_output's,
    the same transfer and write) over ORT's alone in one process (``ort``); below 1: slower
    there, sharing its core and caches with the JVM."""
    with_ort, without = peers.get("floor_ort", {}), peers.get("floor_output", {})
    if "cpu_seconds" not in with_ort or "cpu_seconds" not in without:
        return None
    cost = with_ort["cpu_seconds"] - without["cpu_seconds"]
    return round(with_ort["rows"] / cost / ort, 2) if cost > 0 else None


def bound_by_round(run: dict[str, Any], model: str) -> list[float]:
    """The job over the bound in each timed round, from that round's job, floor_arrow and
    ``ort`` (each round runs all three, interleaved): how far the machine's noise moves the
    ratio. Empty where the rounds had no ``ort`` or a peer missed a round."""
    peers = run["models"][model]["peers"]
    got = [peers.get(name, {}) for name in ("job", "floor_arrow", ORT)]
    if any("cpu_runs" not in g for g in got) or len({len(g["cpu_runs"]) for g in got}) != 1:
        return []
    job, floor, ort = got
    return sorted(
        round((floor["cpu_runs"][i] / floor["rows"] + ort["cpu_runs"][i] / ort["rows"])
              / (job["cpu_runs"][i] / job["rows"]), 2)
        for i in range(len(job["cpu_runs"]))
        if job["cpu_runs"][i] > 0 and ort["cpu_runs"][i] > 0
    )  # fmt: skip


def cpu_per_million(peers: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each peer's CPU-seconds per 1M rows by process (driver, JVM, Python workers)."""
    return {
        name: {k: round(v * 1e6 / got["rows"], 3) for k, v in got["cpu_split"].items()}
        for name, got in peers.items()
        if "cpu_split" in got
    }


def marginal(run: dict[str, Any], model: str) -> dict[str, float]:
    """Costs per row and per run from the two sizes (``name`` and ``name@big``): a peer's
    rows per CPU-second past its fixed cost, the CPU-seconds that fixed cost takes, and the
    target ratios on the per-row rates. Empty when the run had no second size."""
    peers, local = run["models"][model]["peers"], run["models"][model]["in_process"]
    out: dict[str, float] = {}
    per_row: dict[str, float] = {}
    for name, big in peers.items():
        small = peers.get(name.removesuffix(BIG), {})
        if not name.endswith(BIG) or "cpu_seconds" not in small or "cpu_seconds" not in big:
            continue
        cost = (big["cpu_seconds"] - small["cpu_seconds"]) / (big["rows"] - small["rows"])
        if cost <= 0:  # noise larger than the rows' cost: no figure rather than a wrong one
            continue
        base = name.removesuffix(BIG)
        per_row[base] = cost
        out[f"{base}_marginal_per_core"] = round(1 / cost, 1)
        out[f"{base}_fixed_cpu_s"] = round(small["cpu_seconds"] - cost * small["rows"], 3)
    job, ort = per_row.get("job"), _ort(peers, local, int(run["cores"]))
    if job is None:
        return out
    for peer in ("floor_ort", "handwritten_onnx", "pickle_pandas"):
        if peer in per_row:
            out[f"job_vs_{peer}_marginal"] = round(per_row[peer] / job, 2)
    for floor, bound in (("floor_arrow", "bound"), ("floor_output", "bound_output")):
        if floor in per_row:
            out[f"job_vs_{bound}_marginal"] = round((per_row[floor] + 1 / ort) / job, 2)
    fixed, rows = out["job_fixed_cpu_s"], peers["job"]["rows"]
    if fixed > 0:  # Amdahl: the rows' cost split over 2 cores, the run's fixed cost on one
        out["job_2_cores_if_only_its_fixed_cost_stayed_serial"] = round(
            (fixed + rows * job) / (fixed + rows * job / 2), 2
        )
    if "floor_ort" in per_row and "floor_output" in per_row:
        cost = per_row["floor_ort"] - per_row["floor_output"]
        if cost > 0:
            out["ort_in_worker_vs_alone_marginal"] = round(1 / cost / ort, 2)
    return out


def scaling(runs: list[dict[str, Any]], model: str, peer: str = "job") -> float | None:
    """Wall-clock rows/s on the most cores over rows/s on the fewest (1.0: no gain)."""
    if len(runs) < 2:
        return None
    first = runs[0]["models"][model]["peers"].get(peer, {}).get("rows_per_s")
    last = runs[-1]["models"][model]["peers"].get(peer, {}).get("rows_per_s")
    return round(float(last) / float(first), 2) if first and last else None


def paired_scaling(pairs: list[list[dict[str, Any]]], model: str, peer: str = "job") -> list[float]:
    """:func:`scaling` of each pair of sessions (fewest cores, most), where the peer ran in both."""
    got = [scaling(pair, model, peer) for pair in pairs]
    return [g for g in got if g is not None]


def apart_scaling(pairs: list[list[dict[str, Any]]], apart: list[list[dict[str, Any]]], model: str,
                  peer: str = "job") -> tuple[list[float], list[float]]:  # fmt: skip
    """Per pair of sessions: the machine's own scaling (the one-core sessions run at once beside
    it, their wall rows/s summed, over the pair's one-core session) and the pair's scaling over
    it (its many-core session over those sessions summed: 1.0 is as good as independent
    copies of the job). Pairs where the peer did not run in every session are left out."""
    machine, versus = [], []
    for pair, sides in zip(pairs, apart, strict=False):
        rates = [s["models"][model]["peers"].get(peer, {}).get("rows_per_s") for s in sides]
        first = pair[0]["models"][model]["peers"].get(peer, {}).get("rows_per_s")
        last = pair[-1]["models"][model]["peers"].get(peer, {}).get("rows_per_s")
        if sides and all(rates) and first and last:
            together = sum(float(r) for r in rates)
            machine.append(round(together / float(first), 2))
            versus.append(round(float(last) / together, 2))
    return machine, versus


def grown_by(runs: list[dict[str, Any]], pairs: list[list[dict[str, Any]]] | None, model: str,
           peer: str = "job") -> tuple[float | None, str]:  # fmt: skip
    """The scaling to judge: the median over the pairs of sessions where there are several,
    else the one pair's; and its cell's text."""
    each = paired_scaling(pairs, model, peer) if pairs else []
    if len(each) > 1:
        return round(statistics.median(each), 2), median_of(each)
    one = scaling(runs, model, peer)
    return one, "-" if one is None else f"{one:.2f}x"


def median_of(values: list[float]) -> str:
    """A cell: the median, and each value where there are several."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.2f}x"
    listed = ", ".join(f"{v:.2f}" for v in values)
    return f"{median:.2f}x (median of {len(values)} pairs of sessions: {listed})"


# The speed issue's targets, per core on 1 core, and the ones its notes propose in their place
# (the 1.5x over the pickle UDF needs ORT well ahead of scikit-learn, which a small
# forest does not give; its bound leaves out writing the scores): (what, ratio key, at least).
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("job ≥ 1.15x the hand-written ONNX UDF", "job_vs_handwritten_onnx", 1.15),
    ("job ≥ 1.5x the pickle pandas UDF", "job_vs_pickle_pandas", 1.5),
    ("job ≥ 0.95x the bound 1/(1/floor + 1/ort)", "job_vs_bound", 0.95),
    ("proposed: job ≥ 0.9x floor_ort (the job's own cost)", "job_vs_floor_ort", 0.9),
    ("proposed: job ≥ 0.8x the bound that writes the scores", "job_vs_bound_output", 0.8),
)
SCALING_TARGET = 1.8
# In runs whose rounds had no ``ort`` peer, the bound's ORT rate was measured once, alone,
# after the rounds; where ORT came out this much faster inside a Spark worker (floor_ort) than
# alone, that moment was slower than the rounds, the bound is low with it, and the bound's
# target is not judged on it. Timed in the rounds, ``ort`` shares their moments.
SLOW_ORT = 1.05


def targets(
    runs: list[dict[str, Any]], model: str, pairs: list[list[dict[str, Any]]] | None = None
) -> list[tuple[str, float | None, float | None, str]]:
    """Each target of one model: (what, the ratio on the 1-core run, the same per row where
    the run had a second size, "met" / "not met" / "-" judged on the first). Empty without a
    1-core run. The scaling is judged on the median over ``pairs`` of sessions where given."""
    one = next((r for r in runs if int(r["cores"]) == 1), None)
    if one is None:
        return []
    per_run, per_row = ratios(one, model), marginal(one, model)

    in_rounds = peer_rate(one["models"][model]["peers"], ORT, 1) is not None
    in_worker = None if in_rounds else per_run.get("ort_in_worker_vs_alone")

    def verdict(value: float | None, least: float, key: str = "") -> str:
        if value is None:
            return "-"
        if key == "job_vs_bound" and in_worker is not None and in_worker > SLOW_ORT:
            return (f"not judged: ORT ran {in_worker:.2f}x faster inside a worker than alone, "
                    "so `ort` was measured in a slow moment")  # fmt: skip
        return "met" if value >= least else "not met"

    rows = [(what, per_run[key], per_row.get(f"{key}_marginal"),
             verdict(per_run[key], least, key)) for what, key, least in TARGETS]  # fmt: skip
    if len(runs) > 1 and int(runs[-1]["cores"]) == 2:
        grown, _ = grown_by([one, runs[-1]], pairs, model)
        rows.append((f"job ≥ {SCALING_TARGET}x from 1 to 2 cores (wall)", grown, None,
                     verdict(grown, SCALING_TARGET)))  # fmt: skip
    return rows


