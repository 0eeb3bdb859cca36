"""``OptimizationReport``: every candidate tried, how it fared at the gate, how fast it ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelport.optimize.gate import GateResult
from modelport.optimize.speed import SpeedResult

if TYPE_CHECKING:
    import onnx
    from rich.console import RenderableType

__all__ = ["Candidate", "OptimizationReport"]


@dataclass
class Candidate:
    """One optimized variant of the float model."""

    quantize: str | None  # "dynamic" | "static" | None (graph optimization only)
    per_channel: bool = False
    level: str | None = None
    gate: GateResult | None = None
    speed: SpeedResult | None = None
    error: str | None = None  # it could not be built or run
    size_bytes: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # quantization data types
    checks: list[Any] = field(default_factory=list, repr=False)  # modelport.verify CheckResults
    model: onnx.ModelProto | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        if self.quantize is None:
            return f"fp32-{self.level}"
        name = self.quantize + ("-per-channel" if self.per_channel else "")
        return name + (f"+{self.level}" if self.level else "")

    @property
    def passed(self) -> bool:
        return self.error is None and self.gate is not None and self.gate.passed

    @property
    def description(self) -> str:
        """What was done, as stored in the ``optimized`` tag."""
        parts = [f"level={self.level or 'none'}", f"quantize={self.quantize or 'none'}"]
        if self.quantize:
            parts.append(f"per_channel={str(self.per_channel).lower()}")
        return ";".join(parts)

    def speedup(self, baseline: SpeedResult | None, batch: int) -> float | None:
        if baseline is None or self.speed is None:
            return None
        before, after = baseline.median_ms(batch), self.speed.median_ms(batch)
        return before / after if before and after else None

    def to_dict(self, baseline: SpeedResult | None = None) -> dict[str, Any]:
        speed = self.speed.to_dict() if self.speed else None
        if speed is not None and baseline is not None:
            speed["speedup"] = {
                f"batch_{b}": _round(self.speedup(baseline, b)) for b in sorted(baseline.latency)
            }
        return {
            "name": self.name,
            "quantize": self.quantize,
            "per_channel": self.per_channel,
            "level": self.level,
            "settings": dict(self.settings),
            "passed": self.passed,
            "gate": self.gate.to_dict() if self.gate is not None else None,
            "speed": speed,
            "size_bytes": self.size_bytes,
            "error": self.error,
        }


@dataclass
class OptimizationReport:
    """Truthy when a candidate passed; ``registered`` is the new version's reference."""

    source: str  # "name:3"
    max_accuracy_drop: float
    atol: float | None
    rtol: float | None
    eval_source: str
    eval_rows: int
    calibration_source: str | None = None
    baseline: SpeedResult | None = None
    baseline_size: int | None = None
    candidates: list[Candidate] = field(default_factory=list)
    chosen: str | None = None
    registered: str | None = None
    cpu: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.chosen is not None

    def __bool__(self) -> bool:
        return self.passed

    def candidate(self, name: str) -> Candidate:
        for cand in self.candidates:
            if cand.name == name:
                return cand
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "passed": self.passed,
            "chosen": self.chosen,
            "registered": self.registered,
            "budget": {
                "max_accuracy_drop": self.max_accuracy_drop,
                "atol": self.atol,
                "rtol": self.rtol,
            },
            "eval": {"source": self.eval_source, "rows": self.eval_rows},
            "calibration": self.calibration_source,
            "baseline": {
                "speed": self.baseline.to_dict() if self.baseline else None,
                "size_bytes": self.baseline_size,
            },
            "candidates": [c.to_dict(self.baseline) for c in self.candidates],
            "cpu": dict(self.cpu),
            "notes": list(self.notes),
        }

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        batches = sorted(self.baseline.latency) if self.baseline else []
        table = Table(title=f"optimize {self.source}", title_justify="left")
        for column in ("candidate", "gate", "result", "size"):
            table.add_column(column)
        for batch in batches:
            table.add_column(f"batch {batch}", justify="right")
        table.add_column("note")
        base_cells = [_ms(self.baseline.median_ms(b)) for b in batches] if self.baseline else []
        table.add_row("float", "-", "reference", _size(self.baseline_size), *base_cells, "")
        for cand in self.candidates:
            verdict = (
                "[red]error[/]"
                if cand.error
                else "[green]pass[/]"
                if cand.passed
                else "[red]fail[/]"
            )
            cells = []
            for batch in batches:
                ms = cand.speed.median_ms(batch) if cand.speed else None
                ratio = cand.speedup(self.baseline, batch)
                cells.append(f"{_ms(ms)} ({ratio:.2f}x)" if ms and ratio else "-")
            note = cand.error or ("; ".join(cand.gate.failures) if cand.gate is not None else "")
            name = cand.name + (" [bold]*chosen*[/]" if cand.name == self.chosen else "")
            result = cand.gate.headline if cand.gate is not None else "-"
            # Error texts come from ONNX Runtime and may hold brackets rich would read as markup.
            table.add_row(
                name, verdict, escape(result), _size(cand.size_bytes), *cells, escape(note)
            )
        lines = [
            f"evaluation: {self.eval_rows} rows from {self.eval_source}; budget: max accuracy "
            f"drop {self.max_accuracy_drop:g}"
            + (f", atol {self.atol:g}" if self.atol is not None else "")
            + (f", rtol {self.rtol:g}" if self.rtol is not None else ""),
            "latency: median ms, 1 intra-op thread (speed-up against float in brackets)",
        ]
        if self.registered:
            lines.append(f"registered {self.registered} ({self.chosen})")
        elif self.chosen:
            lines.append(f"chosen {self.chosen} (not registered)")
        elif any(c.passed for c in self.candidates):
            lines.append(
                "candidates passed the gate but none is faster than the float model here; "
                "nothing was registered"
            )
        else:
            lines.append("no candidate passed the gate; nothing was registered")
        lines += [f"note: {n}" for n in self.notes]
        return Group(table, *(Text(line) for line in lines))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024:.1f} KiB" if value < 1024 * 1024 else f"{value / 2**20:.1f} MiB"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
