"""Which format to ship, derived from the measurements and the user's constraints, and the
findings worth saying out loud. Pure functions of the results: no measuring here.

The rules, in order (each dropped candidate keeps its reason in the ranking):

1. **Works**: the engine was measured and agrees with the original (parity pass; the pickle is
   the original).
2. **Runs in the target**: ``python``: pickle, skops, ONNX; ``jvm``: PMML (ONNX also runs on the
   JVM through onnxruntime's Java API, not measured here); ``any``: the language-neutral formats,
   ONNX and PMML, and only where a portability check against the original (ONNX in Node.js) did
   not find different predictions (a check that could not run, "missing" or "error", is
   reported in the reasons but decides nothing: it measured nothing). The two PMML engines
   compared with each other gate nothing: which of them differs from the original is parity's
   verdict on each, in rule 1.
3. **Loads as data**: formats whose loading runs code (the security check) are dropped while
   another candidate remains.
4. **Fastest for the workload**: ``batch``: rows/s per core on Spark when measured, else
   in-process rows/s at the largest batch measured (never a mix of the two); ``single-row``:
   p50 latency of one row.
5. **Ties** (within 10 % of the best) go to the faster cold load, then the smaller gzip size.
"""

from __future__ import annotations

from dataclasses import dataclass

from formats.compare.results import (
    Cell,
    EngineResult,
    Recommendation,
    SecurityCheck,
    SparkResult,
)

__all__ = ["TARGETS", "WORKLOADS", "findings", "recommend"]

TARGETS: dict[str, tuple[str, ...]] = {
    "python": ("pickle", "skops", "onnx"),
    "jvm": ("pmml",),
    "any": ("onnx", "pmml"),
}
WORKLOADS = ("batch", "single-row")
TIE = 0.10


@dataclass
class _Candidate:
    result: EngineResult
    value: float | None  # higher is better (rows/s, or 1 / latency)
    shown: str
    why: str = ""


def _metric(r: EngineResult, workload: str, spark: list[SparkResult] | None) -> tuple[float | None, str]:
    if workload == "single-row":
        p50 = r.latency_p50_ms
        return (None, "") if not p50 else (1.0 / p50, f"p50 {p50:.3g} ms per row")
    if spark:  # one yardstick for all: an engine Spark did not run is not measured
        on = next((s for s in spark if (s.fmt, s.engine) == (r.fmt, r.engine)), None)
        if on is None or on.rows_per_s_per_core is None:  # not run there, or it failed
            return None, ""
        return on.rows_per_s_per_core, f"{on.rows_per_s_per_core:,.0f} rows/s/core on Spark"
    if not r.throughput:
        return None, ""
    best = max(r.throughput, key=lambda t: t.batch)
    return best.rows_per_s, f"{best.rows_per_s:,.0f} rows/s at batch {best.batch:,}"


def recommend(
    engines: list[EngineResult],
    portability: list[Cell],
    security: list[SecurityCheck],
    target: str,
    workload: str,
    spark: list[SparkResult] | None = None,
) -> Recommendation:
    allowed = TARGETS[target]
    failed_port = {
        c.fmt for c in portability
        if c.status == "differs" and c.details.get("against") == "original"
    }  # fmt: skip
    runs_code = {s.fmt for s in security if s.runs_code}
    cands = [_Candidate(r, *_metric(r, workload, spark)) for r in engines]
    for c in cands:
        r = c.result
        if r.status != "measured":
            c.why = r.reason or r.status
        elif r.parity not in ("original", "pass"):
            c.why = f"parity {r.parity or 'not measured'}"
        elif r.fmt not in allowed:
            c.why = f"does not run in target {target}"
        elif target == "any" and r.fmt in failed_port:
            c.why = "its portability check failed"
        elif c.value is None:
            c.why = "not measured for this workload"
    kept = [c for c in cands if not c.why]
    if any(c.result.fmt not in runs_code for c in kept):
        for c in kept:
            if c.result.fmt in runs_code:
                c.why = "loading runs code (and a format that loads as data qualifies)"
        kept = [c for c in kept if not c.why]
    kept.sort(key=lambda c: -(c.value or 0.0))
    if kept:
        best = kept[0].value or 0.0
        close = [c for c in kept if (c.value or 0.0) >= best * (1 - TIE)]
        close.sort(key=lambda c: (c.result.load_seconds or 0.0, c.result.gzip_bytes or 0))
        kept = close + [c for c in kept if c not in close]
    ranking = [
        {"fmt": c.result.fmt, "engine": c.result.engine, "value": c.shown,
         "kept": not c.why, "why": c.why}
        for c in kept + [c for c in cands if c.why]
    ]  # fmt: skip
    if not kept:
        headline = f"No format qualifies for target {target}, {workload}: see the ranking"
        return Recommendation(None, None, target, workload, headline, [], ranking)
    top = kept[0]
    return Recommendation(
        top.result.fmt, top.result.engine, target, workload,
        f"Ship {top.result.fmt.upper()} ({top.result.engine}) for target {target}, {workload}",
        _reasons(top, kept[1:], engines, portability, security), ranking,
    )  # fmt: skip


def _reasons(
    top: _Candidate,
    rest: list[_Candidate],
    engines: list[EngineResult],
    portability: list[Cell],
    security: list[SecurityCheck],
) -> list[str]:
    r = top.result
    out = [f"fastest qualifying for the workload: {top.shown}"]
    if rest:
        nxt = rest[0]
        ratio = (top.value or 0) / (nxt.value or 1)
        out.append(f"next: {nxt.result.key} at {nxt.shown} ({ratio:.2g}x)")
    labels = "" if r.label_agreement is None else f"labels {r.label_agreement:.2%} equal, "
    parity = "it is the original" if r.parity == "original" else (
        f"parity pass: {labels}max |diff| {r.max_abs or 0:.2g}"  # a regressor has no labels
    )
    out.append(parity)
    out.append(f"cold load {r.load_seconds or 0:.2f} s; {r.gzip_bytes or 0:,} bytes gzipped")
    out += [f"portability: {c.check}: {c.summary}" for c in portability if c.fmt == r.fmt]
    out += [f"security: {s.verdict}" for s in security if s.fmt == r.fmt]
    if r.fmt == "pmml":
        out.append("ONNX also runs on the JVM through onnxruntime's Java API (not measured here)")
    return out


def findings(
    engines: list[EngineResult], portability: list[Cell], spark: list[SparkResult] | None = None
) -> list[str]:
    """Comparisons stated plainly, including where ONNX Runtime loses."""
    by = {e.key: e for e in engines if e.status == "measured"}
    out = []
    ort, skl = by.get("onnx/onnxruntime"), by.get("pickle/sklearn")
    if ort and skl:
        for t in skl.throughput:
            mine = ort.rows_per_s(t.batch)
            if mine is None:
                continue
            if mine < t.rows_per_s:
                out.append(
                    f"ONNX Runtime is slower than scikit-learn at batch {t.batch:,}: "
                    f"{mine:,.0f} vs {t.rows_per_s:,.0f} rows/s"
                )
            else:
                out.append(
                    f"ONNX Runtime is {mine / t.rows_per_s:.2g}x scikit-learn at batch "
                    f"{t.batch:,} ({mine:,.0f} vs {t.rows_per_s:,.0f} rows/s)"
                )
    pmml = [by[k] for k in ("pmml/pypmml", "pmml/jpmml") if k in by]
    if len(pmml) == 2 and pmml[0].throughput and pmml[1].throughput:
        a, b = (max(p.throughput, key=lambda t: t.batch) for p in pmml)
        fast, slow = (pmml[0], pmml[1]) if a.rows_per_s >= b.rows_per_s else (pmml[1], pmml[0])
        ra, rb = max(a.rows_per_s, b.rows_per_s), min(a.rows_per_s, b.rows_per_s)
        out.append(f"of the PMML engines {fast.engine} is faster at batch {a.batch:,}: "
                   f"{ra:,.0f} vs {rb:,.0f} rows/s ({slow.engine})")  # fmt: skip
    loads = [e for e in by.values() if e.load_seconds is not None]
    if loads:
        slow_load = max(loads, key=lambda e: e.load_seconds or 0)
        fast_load = min(loads, key=lambda e: e.load_seconds or 0)
        out.append(f"cold load: {fast_load.key} {fast_load.load_seconds:.2f} s, slowest "
                   f"{slow_load.key} {slow_load.load_seconds:.2f} s")  # fmt: skip
    for e in by.values():
        if e.parity == "fail":
            labels = "" if e.label_agreement is None else f"labels {e.label_agreement:.2%} equal, "
            why = f" ({e.parity_reason})" if e.parity_reason else ""
            out.append(f"{e.key} fails parity with the original: {labels}max |diff| "
                       f"{e.max_abs or 0:.2g}{why}")  # fmt: skip
        elif e.parity == "error":
            out.append(f"{e.key} could not be compared with the original: {e.parity_reason}")
    out += [f"{c.check}: {c.status}: {c.summary}" for c in portability
            if c.status in ("differs", "error", "warning")]  # fmt: skip
    return out + _spark_findings(spark or [])


def _spark_findings(spark: list[SparkResult]) -> list[str]:
    out = []
    ran = {f"{s.fmt}/{s.engine}": s for s in spark if s.rows_per_s_per_core is not None}
    if ran:
        fast = max(ran.values(), key=lambda s: s.rows_per_s_per_core or 0.0)
        slow = min(ran.values(), key=lambda s: s.rows_per_s_per_core or 0.0)
        out.append(f"on Spark the fastest is {fast.fmt}/{fast.engine} ({fast.how}): "
                   f"{fast.rows_per_s_per_core or 0:,.0f} rows/s per core, "
                   f"{(fast.rows_per_s_per_core or 0) / (slow.rows_per_s_per_core or 1):.2g}x "
                   f"the slowest, {slow.fmt}/{slow.engine}")  # fmt: skip
    jvm, py = ran.get("pmml/jpmml"), ran.get("pmml/pypmml")
    if jvm and py:
        ratio = (jvm.rows_per_s_per_core or 0) / (py.rows_per_s_per_core or 1)
        out.append(f"on Spark PMML in the executors' JVM (jpmml) is {ratio:.2g}x PMML in a "
                   f"pandas UDF (pypmml): {jvm.rows_per_s_per_core or 0:,.0f} vs "
                   f"{py.rows_per_s_per_core or 0:,.0f} rows/s per core")  # fmt: skip
    for s in spark:
        if s.error:
            out.append(f"on Spark {s.fmt}/{s.engine}: {s.error}")
        elif s.agreement is not None and s.agreement < 1.0:
            out.append(f"on Spark {s.fmt}/{s.engine} agrees with the original on "
                       f"{s.agreement:.2%} of {s.rows:,} rows")  # fmt: skip
    return out
