"""The report's content, once, as neutral sections (text, a table, plots) that report.md and
report.html both draw: the two cannot say different things."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from formats.compare import plots
from formats.compare.results import CompareReport, EngineResult, SparkResult

__all__ = ["SPARK_NOT_MEASURED", "Section", "Table", "sections"]

SPARK_NOT_MEASURED = "not measured: run `make compare` with Spark"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    ident: str
    title: str
    text: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    table: Table | None = None
    plots: list[str] = field(default_factory=list)  # inline SVG, drawn by the HTML only


def _bytes(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def _num(v: float | None, fmt: str = ".3g", unit: str = "") -> str:
    return "—" if v is None else f"{v:{fmt}}{unit}"


def recommendation(r: CompareReport) -> Section:
    rec = r.recommendation
    rows = [[str(i + 1) if x["kept"] else "—", f"{x['fmt']}/{x['engine']}", x["value"] or "—",
             "qualifies" if x["kept"] else x["why"]] for i, x in enumerate(rec.ranking)]  # fmt: skip
    text = [f"**{rec.headline}.**", f"Constraints: target `{rec.target}`, workload "
            f"`{rec.workload}` (`--target`, `--workload`). The rules are in formats/compare/"
            "recommend.py: works (parity), runs in the target, loads as data, fastest for the "
            "workload, ties to faster load then smaller size."]  # fmt: skip
    return Section("recommendation", "Recommendation", text, rec.reasons,
                   Table(["rank", "format/engine", "measured", "verdict"], rows))  # fmt: skip


def _parity(e: EngineResult) -> str:
    if e.parity == "original":
        return "original"
    if e.parity in ("pass", "fail"):
        labels = "" if e.label_agreement is None else f"labels {e.label_agreement:.2%}, "
        why = f" ({e.parity_reason})" if e.parity == "fail" and e.parity_reason else ""
        return f"{e.parity}: {labels}max |diff| {_num(e.max_abs, '.2g')}{why}"
    return f"{e.parity}: {e.parity_reason}" if e.parity_reason else e.parity or "—"


def _rss(e: EngineResult) -> str:
    py = _num(e.rss_python_mb, ".0f", " MB")
    return py if e.rss_jvm_mb is None else f"{py} + JVM {e.rss_jvm_mb:.0f} MB"


def in_process(r: CompareReport) -> Section:
    engines = r.engines
    batches = r.options.batch_sizes
    measured: list[tuple[str, Callable[[EngineResult], str]]] = [
        ("file size", lambda e: _bytes(e.file_bytes)),
        ("gzip size", lambda e: _bytes(e.gzip_bytes)),
        ("save time", lambda e: _num(e.save_seconds, ".2f", " s") if not e.save_error
         else e.save_error),
        (f"cold load (median of {r.options.repeats})", lambda e: _num(e.load_seconds, ".2f", " s")),
        ("first predict", lambda e: _num(e.first_predict_ms, ".3g", " ms")),
        *[(f"rows/s at batch {b:,}", lambda e, b=b: _num(e.rows_per_s(b), ",.0f")) for b in batches],
        ("p50 one row", lambda e: _num(e.latency_p50_ms, ".3g", " ms")),
        ("p99 one row", lambda e: _num(e.latency_p99_ms, ".3g", " ms")),
        ("peak RSS", _rss),
        ("parity", _parity),
    ]  # fmt: skip
    rows = []
    for i, (name, cell) in enumerate(measured):
        row = [name]
        for e in engines:
            if e.status == "measured":
                row.append(cell(e))
            else:  # the engine's column says why, once, at the top
                row.append(e.reason if i == 0 else "—")
        rows.append(row)
    table = Table(["", *[e.key for e in engines]], rows)
    ok = [e for e in engines if e.status == "measured"]
    throughput = {e.key: [(float(t.batch), t.rows_per_s) for t in e.throughput] for e in ok}
    sizes, seen = [], set()
    for e in ok:
        if e.fmt not in seen and e.file_bytes is not None and e.gzip_bytes is not None:
            seen.add(e.fmt)
            sizes += [(e.fmt, float(e.file_bytes), _bytes(e.file_bytes)),
                      (e.fmt, float(e.gzip_bytes), _bytes(e.gzip_bytes))]  # fmt: skip
    figures = [
        plots.lines("throughput", "warm throughput against batch size", throughput,
                    x_label="batch size (rows)", y_label="rows/s"),
        plots.bars("load", f"cold load in a fresh process (median of {r.options.repeats})",
                   [(e.key, e.load_seconds or 0.0, _num(e.load_seconds, ".2f", " s")) for e in ok]),
        plots.bars("size", "file size", sizes, series=("raw", "gzip")),
        plots.bars("parity", "parity: max |difference| from the original (log scale)",
                   [(e.key, e.max_abs or 0.0, _parity(e)) for e in ok], log=True),
    ]  # fmt: skip
    text = [f"{r.data_rows:,} rows of `{r.data}`; batches larger than the data repeat its rows. "
            "Columns are format/engine; an engine that could not be measured says why."]
    return Section("in-process", "In-process, per format and engine", text, table=table,
                   plots=figures)  # fmt: skip


def _spark_agreement(s: SparkResult, task: str) -> str:
    if s.agreement is None:
        return "—"
    return f"{s.agreement:.2%}" + (" within tolerance" if task == "regression" else "")


def spark(r: CompareReport) -> Section:
    if r.spark is None:
        plain = SPARK_NOT_MEASURED.replace("`", "")
        figure = plots.placeholder("spark", "Spark rows/s per core", plain)
        return Section("spark", "On Spark", [SPARK_NOT_MEASURED], plots=[figure])
    rows = []
    for s in r.spark:
        runs = ", ".join(f"{x:.2f}" for x in s.runs)
        rows.append([f"{s.fmt}/{s.engine}", _num(s.rows_per_s_per_core, ",.0f"),
                     _spark_agreement(s, r.task), _num(s.max_abs, ".2g"),
                     "—" if s.seconds is None else f"{s.seconds:.2f} s ({runs})", s.how,
                     s.error or ""])  # fmt: skip
    ok = [s for s in r.spark if s.rows_per_s_per_core is not None]
    figure = plots.bars("spark", "Spark rows/s per core",
                        [(f"{s.fmt}/{s.engine}", s.rows_per_s_per_core or 0.0,
                          f"{s.rows_per_s_per_core or 0:,.0f}") for s in ok])  # fmt: skip
    equal = "within the tolerance of" if r.task == "regression" else "with the label of"
    table = Table(["format/engine", "rows/s per core", f"rows {equal} the original",
                   "max |diff|", "median (runs)", "how", "error"], rows)  # fmt: skip
    first = r.spark[0]
    text = [
        f"{first.rows:,} rows of the same Parquet, on `{first.master or 'spark'}` with "
        f"{first.cores} cores (Spark's defaultParallelism), every engine in turn. Each engine: "
        "one untimed warm-up on a small slice (workers, JVMs and models loaded), then timed "
        "runs of the whole action (read, score, write Parquet), median; rows/s per core = rows "
        "/ median s / cores.",
        "The original is the bundle's pickle scored as `formats parity` scores it "
        "(scikit-learn's own predict and predict_proba), run on Spark separately and untimed; "
        "each output is joined with it on the id column. max |diff|: of the probabilities "
        "(regression: the predictions).",
    ]
    return Section("spark", "On Spark", text, table=table, plots=[figure])


def portability(r: CompareReport) -> Section:
    rows = [[c.check, c.status, c.summary] for c in r.portability]
    text = [] if rows else ["no portability check was run"]
    return Section("portability", "Portability", text,
                   table=Table(["check", "result", "what happened"], rows))  # fmt: skip


def requirements(r: CompareReport) -> Section:
    rows = []
    for q in r.requirements:
        names = ", ".join(f"{p.name} {p.version}" for p in q.packages[:8])
        names += f" and {len(q.packages) - 8} more" if len(q.packages) > 8 else ""
        rows.append([f"{q.fmt}/{q.engine}", names, _bytes(q.package_bytes), q.runtime,
                     _bytes(q.runtime_bytes), q.note])  # fmt: skip
    table = Table(["format/engine", "packages (with dependencies)", "packages on disk", "runtime",
                   "runtime on disk", "note"], rows)  # fmt: skip
    return Section("requirements", "What each format needs installed to score", table=table)


def security(r: CompareReport) -> Section:
    rows = [[s.fmt, "yes" if s.runs_code else "no", s.verdict, s.evidence] for s in r.security]
    table = Table(["format", "loading runs code", "verdict", "evidence"], rows)
    return Section("security", "Security: does loading run code?", table=table)


def method(r: CompareReport) -> Section:
    o = r.options
    bullets = [
        "size: the bundle's file, raw and gzip level 6",
        "save time: formats.save of that one format again, from the pickle and the bundle's "
        "input example, into a temporary directory",
        f"cold load: formats.load in a fresh `python` process, {o.repeats} processes, median; "
        "it includes importing the engine and starting its JVM, not Python's own start-up",
        f"warm throughput: one untimed call per batch size (skipped where it would take over "
        f"2 s: the smaller batches warmed the engine), then calls for at least {o.min_seconds:g}"
        f" s; ONNX Runtime with {o.threads} intra-op thread(s)",
        f"latency: {o.latency_rows} distinct single rows, one call each, p50 and p99",
        "peak RSS: VmHWM of the measuring process after the largest batch, plus VmHWM of "
        "its child processes (the py4j JVM of pypmml and JPMML-Evaluator)",
        f"parity: formats.parity on the first {o.parity_rows:,} rows (the unpickled original, "
        "called on the rows as given)",
    ]
    host = ", ".join(f"{k} {v}" for k, v in r.host.items())
    text = [f"{host}; total {r.seconds:.0f} s; {r.created}."]
    return Section("method", "How it was measured", text, bullets)


def sections(r: CompareReport) -> list[Section]:
    findings = Section("findings", "Findings", bullets=r.findings or ["nothing stood out"])
    return [recommendation(r), findings, in_process(r), spark(r), portability(r),
            requirements(r), security(r), method(r)]  # fmt: skip
