"""Prometheus metrics, one registry per app so that several apps (tests) never collide.

Series, all labelled by ``model`` and ``version``::

    modelport_request_success_total        requests answered
    modelport_request_failure_total        requests that failed (bad input, model error, 503)
    modelport_request_duration_seconds     arrival of the decoded request -> outputs ready
    modelport_queue_duration_seconds       time waiting for the model's worker
    modelport_compute_duration_seconds     ONNX Runtime run (per batch)
    modelport_batch_size                   rows per ONNX Runtime run
    modelport_pending_requests             requests queued or running now

Updates are on the hot path of every request, so they go to plain Python numbers (a bisect and
two additions, no lock: each series has one writer at a time, the event loop or the model's
worker) and a custom collector turns them into Prometheus families only when ``/metrics`` is
scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counter", "Histogram", "Metrics", "ModelMetrics"]

# Latency buckets from 100 us: a small model answers well under a millisecond.
_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
            1.0, 2.5, 5.0, 10.0)
_ROWS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@dataclass(frozen=True)
class ModelMetrics:
    """Every series for one (model, version)."""

    success: Counter = field(default_factory=Counter)
    failure: Counter = field(default_factory=Counter)
    pending: Counter = field(default_factory=Counter)
    request: Histogram = field(default_factory=lambda: Histogram(_SECONDS))
    queue: Histogram = field(default_factory=lambda: Histogram(_SECONDS))
    compute: Histogram = field(default_factory=lambda: Histogram(_SECONDS))
    batch: Histogram = field(default_factory=lambda: Histogram(_ROWS))


_COUNTERS = (
    ("success", "modelport_request_success", "Inference requests answered"),
    ("failure", "modelport_request_failure", "Inference requests that failed"),
)
_HISTOGRAMS = (
    ("request", "modelport_request_duration_seconds",
     "Inference request duration, decoded request to outputs"),
    ("queue", "modelport_queue_duration_seconds", "Time a request waited for the model's worker"),
    ("compute", "modelport_compute_duration_seconds", "ONNX Runtime run duration per batch"),
    ("batch", "modelport_batch_size", "Rows per ONNX Runtime run"),
)


class Metrics:
    def __init__(self, registry: Any = None) -> None:
        self._registry = registry  # a prometheus_client CollectorRegistry, made when needed
        self._models: dict[tuple[str, str], ModelMetrics] = {}

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry()
        if not getattr(self, "_registered", False):
            self._registry.register(self)  # a custom collector
            self._registered = True
        return self._registry

    def for_model(self, name: str, version: str) -> ModelMetrics:
        """The same object for the same (model, version), across unload and load."""
        key = (name, version)
        found = self._models.get(key)
        if found is None:
            found = self._models[key] = ModelMetrics()
        return found

    def unknown_model_failure(self) -> None:
        """A request that failed before it named a servable model (no per-name series, so that
        made-up names cannot blow up the label set)."""
        self.for_model("", "").failure.inc()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        labels = ["model", "version"]
        models = list(self._models.items())
        for attr, name, text in _COUNTERS:
            family = CounterMetricFamily(name, text, labels=labels)
            for key, series in models:
                family.add_metric(list(key), getattr(series, attr).value)
            yield family
        for attr, name, text in _HISTOGRAMS:
            hist = HistogramMetricFamily(name, text, labels=labels)
            for key, series in models:
                h: Histogram = getattr(series, attr)
                hist.add_metric(list(key), h.buckets(), sum_value=h.total)
            yield hist
        gauge = GaugeMetricFamily("modelport_pending_requests", "Requests queued or running",
                                  labels=labels)
        for key, series in models:
            gauge.add_metric(list(key), series.pending.value)
        yield gauge

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (prometheus_client is imported only now,
        at the first scrape: nothing needs it before)."""
        from prometheus_client import generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return bytes(generate_latest(self.registry)), CONTENT_TYPE_LATEST
