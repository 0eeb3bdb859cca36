"""``formats.compare``: which format to ship, measured.

    from formats.compare import CompareOptions, compare, write_reports

    report = compare("bundles/penguins", "data/penguins", CompareOptions(target="jvm"))
    write_reports(report, "out/compare")     # report.md, report.html (with plots), report.json

In-process per format and engine (size, save time, cold load, warm throughput, latency, peak
RSS, parity), portability (an older scikit-learn, two PMML engines, ONNX in Node.js), installed
requirements, security canaries, and a recommendation derived from them. The Spark half
(``jobs/compare.py``) adds :class:`SparkResult` rows to ``CompareReport.spark``; without it the
report says it was not measured. Importing this package imports no engine: each is loaded
when measured.
"""

from __future__ import annotations

from formats.compare.report import write_reports
from formats.compare.results import (
    Cell,
    CompareOptions,
    CompareReport,
    EngineResult,
    Recommendation,
    Requirement,
    SecurityCheck,
    SparkResult,
)
from formats.compare.run import compare

__all__ = [
    "Cell",
    "CompareOptions",
    "CompareReport",
    "EngineResult",
    "Recommendation",
    "Requirement",
    "SecurityCheck",
    "SparkResult",
    "compare",
    "write_reports",
]
