"""What ``formats compare`` measured, as data: dataclasses with ``to_dict()`` and ``from_dict()``.

Nothing here measures or draws. ``from_dict`` exists so that a later stage (the Spark half of the
comparison, ``jobs/compare.py``) can read ``report.json``, add its :class:`SparkResult` rows with
:func:`dataclasses.replace` and render the report again without measuring anything twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "Cell",
    "CompareOptions",
    "CompareReport",
    "EngineResult",
    "Package",
    "Recommendation",
    "Requirement",
    "SecurityCheck",
    "SparkResult",
    "Throughput",
]


@dataclass
class CompareOptions:
    """How much to measure. The defaults are what ``make compare`` runs (under 5 min, 2 cores)."""

    batch_sizes: tuple[int, ...] = (1, 100, 10_000, 100_000)
    repeats: int = 3  # fresh processes per engine for the cold load time (median)
    latency_rows: int = 200  # single-row calls for p50/p99
    parity_rows: int = 10_000
    min_seconds: float = 0.5  # timed calls per batch size run at least this long
    threads: int = 1  # ONNX Runtime intra-op threads: one core, like the forest's n_jobs=1
    target: str = "any"  # python | jvm | any
    workload: str = "batch"  # batch | single-row
    formats: tuple[str, ...] | None = None  # None: every format of the bundle
    old_sklearn: str | None = "1.6.1"  # None: skip the older-scikit-learn cell
    node: bool = True
    cache_dir: str = ".cache/compare"
    child_timeout: float = 300.0


@dataclass
class Throughput:
    batch: int
    rows_per_s: float
    calls: int
    seconds: float


@dataclass
class EngineResult:
    """One format on one engine. ``status``: "measured", "not saved" or "error" (``reason``)."""

    fmt: str
    engine: str
    status: str
    reason: str = ""
    file_bytes: int | None = None
    gzip_bytes: int | None = None
    save_seconds: float | None = None
    save_error: str = ""
    load_seconds: float | None = None  # median of load_runs
    load_runs: list[float] = field(default_factory=list)
    first_predict_ms: float | None = None
    throughput: list[Throughput] = field(default_factory=list)
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_samples: int = 0
    rss_python_mb: float | None = None
    rss_jvm_mb: float | None = None
    parity: str = ""  # "original", "pass", "fail", "error", "not measured"
    parity_reason: str = ""
    label_agreement: float | None = None
    max_abs: float | None = None

    @property
    def key(self) -> str:
        return f"{self.fmt}/{self.engine}"

    def rows_per_s(self, batch: int) -> float | None:
        return next((t.rows_per_s for t in self.throughput if t.batch == batch), None)


@dataclass
class Cell:
    """One portability check. ``status``: "ok", "warning", "differs", "error", "missing" (a tool
    to install; ``summary`` says which) or "skipped"."""

    check: str
    fmt: str
    status: str
    summary: str
    rows: int = 0
    label_agreement: float | None = None
    max_abs: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Package:
    name: str
    version: str
    bytes: int


@dataclass
class Requirement:
    """What scoring one format on one engine needs installed."""

    fmt: str
    engine: str
    packages: list[Package]
    runtime: str  # "Python 3.11.7", "Java: openjdk version ...", "Node.js v20..."
    runtime_bytes: int | None = None
    note: str = ""

    @property
    def package_bytes(self) -> int:
        return sum(p.bytes for p in self.packages)


@dataclass
class SecurityCheck:
    fmt: str
    runs_code: bool  # does loading a file of this format run code named by the file?
    verdict: str
    evidence: str
    measured: bool = True


@dataclass
class SparkResult:
    """One format on Spark (``jobs/compare.py``). ``rows_per_s_per_core`` and ``agreement`` are
    None when the engine failed or was not saved (``error`` says why)."""

    fmt: str
    engine: str
    rows_per_s_per_core: float | None
    # share of rows whose label equals the original's (regression: within the tolerance)
    agreement: float | None
    how: str = ""  # how the engine ran on Spark (a pandas UDF, a Java UDF, the scoring job)
    rows: int = 0
    cores: int = 0  # Spark's defaultParallelism: the cores the rows were spread over
    master: str = ""
    seconds: float | None = None  # median of runs
    runs: list[float] = field(default_factory=list)
    max_abs: float | None = None  # max |difference| of the probabilities (or predictions)
    error: str | None = None


@dataclass
class Recommendation:
    fmt: str | None
    engine: str | None
    target: str
    workload: str
    headline: str
    reasons: list[str]
    ranking: list[dict[str, Any]]  # {fmt, engine, metric, value, kept, why}


@dataclass
class CompareReport:
    bundle: str
    data: str
    model: str
    task: str
    data_rows: int
    options: CompareOptions
    engines: list[EngineResult]
    portability: list[Cell]
    requirements: list[Requirement]
    security: list[SecurityCheck]
    recommendation: Recommendation
    findings: list[str]
    host: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    created: str = ""
    spark: list[SparkResult] | None = None  # None: not measured (the Spark half adds it)

    def engine(self, fmt: str, engine: str) -> EngineResult | None:
        return next((e for e in self.engines if (e.fmt, e.engine) == (fmt, engine)), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareReport:
        opts = dict(data["options"])
        opts["batch_sizes"] = tuple(opts["batch_sizes"])
        if opts.get("formats") is not None:
            opts["formats"] = tuple(opts["formats"])
        engines = []
        for e in data["engines"]:
            e = dict(e)
            e["throughput"] = [Throughput(**t) for t in e["throughput"]]
            engines.append(EngineResult(**e))
        reqs = []
        for r in data["requirements"]:
            r = dict(r)
            r["packages"] = [Package(**p) for p in r["packages"]]
            reqs.append(Requirement(**r))
        spark = data.get("spark")
        plain = {f.name for f in fields(cls)} - {
            "options", "engines", "portability", "requirements", "security",
            "recommendation", "spark",
        }  # fmt: skip
        return cls(
            **{k: data[k] for k in plain if k in data},
            options=CompareOptions(**opts),
            engines=engines,
            portability=[Cell(**c) for c in data["portability"]],
            requirements=reqs,
            security=[SecurityCheck(**s) for s in data["security"]],
            recommendation=Recommendation(**data["recommendation"]),
            spark=None if spark is None else [SparkResult(**s) for s in spark],
        )
