"""Inline SVG charts for report.html, drawn here: nothing fetched, no plotting library needed.

Two kinds suffice: horizontal bars (load time, size, Spark rows/s, parity) and lines on log-log
axes (throughput against batch size). Every chart is an ``<svg class="plot" id="plot-...">``
with a ``<title>``, which is what the headless-browser test looks for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["bars", "lines", "placeholder"]

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
WIDTH = 760
FONT = 'font-family="sans-serif" font-size="12"'


def _open(ident: str, title: str, height: int) -> list[str]:
    return [
        f'<svg class="plot" id="plot-{ident}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="10" y="18" {FONT} font-weight="bold">{escape(title)}</text>',
    ]


def placeholder(ident: str, title: str, message: str) -> str:
    parts = _open(ident, title, 70)
    parts.append(f'<text x="10" y="48" {FONT} fill="#666">{escape(message)}</text>')
    return "\n".join([*parts, "</svg>"])


def bars(
    ident: str,
    title: str,
    rows: Sequence[tuple[str, float, str]],
    *,
    log: bool = False,
    series: Sequence[str] = (),
) -> str:
    """One bar per (label, value, text). With ``series`` (names), consecutive rows form groups
    of ``len(series)`` bars coloured by series, for raw vs gzip sizes."""
    group = max(1, len(series))
    height = 40 + 22 * len(rows) + (20 if series else 0)
    left, right = 170, WIDTH - 280  # room for the value's text after the longest bar
    values = [v for _, v, _ in rows if v > 0]
    top = max(values, default=1.0)
    floor = min(values, default=1.0) / 10 if log else 0.0

    def scale(v: float) -> float:
        if v <= 0:
            return 0.0
        if log:
            span = math.log10(top) - math.log10(floor) or 1.0
            return (math.log10(v) - math.log10(floor)) / span * (right - left)
        return v / top * (right - left)

    parts = _open(ident, title, height)
    for i, (label, value, text) in enumerate(rows):
        y = 30 + 22 * i
        color = COLORS[i % group] if series else COLORS[0]
        if i % group == 0:
            parts.append(f'<text x="{left - 6}" y="{y + 14}" {FONT} text-anchor="end">'
                         f"{escape(label)}</text>")  # fmt: skip
        w = max(scale(value), 1.0)
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="18" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}" {FONT}>{escape(text)}</text>')
    for j, name in enumerate(series):
        x = left + 120 * j
        parts.append(f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{COLORS[j]}"/>')
        parts.append(f'<text x="{x + 14}" y="{height - 7}" {FONT}>{escape(name)}</text>')
    return "\n".join([*parts, "</svg>"])


def _ticks(low: float, high: float) -> list[float]:
    return [10.0**k for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]


def _short(v: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if v >= size:
            return f"{v / size:g}{unit}"
    return f"{v:g}"


def lines(
    ident: str,
    title: str,
    series: dict[str, list[tuple[float, float]]],
    *,
    x_label: str,
    y_label: str,
) -> str:
    """Log-log lines, one per series of (x, y) points with positive values."""
    points = [p for pts in series.values() for p in pts if p[0] > 0 and p[1] > 0]
    if not points:
        return placeholder(ident, title, "nothing measured")
    height, left, right, top, bottom = 380, 70, WIDTH - 200, 34, 330
    xt = _ticks(min(p[0] for p in points), max(p[0] for p in points))
    yt = _ticks(min(p[1] for p in points), max(p[1] for p in points))

    def px(v: float, ticks: list[float], a: float, b: float) -> float:
        lo, hi = math.log10(ticks[0]), math.log10(ticks[-1]) or 1.0
        return a + (math.log10(v) - lo) / ((hi - lo) or 1.0) * (b - a)

    parts = _open(ident, title, height)
    for t in xt:
        x = px(t, xt, left, right)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 16}" {FONT} text-anchor="middle">'
                     f"{_short(t)}</text>")  # fmt: skip
    for t in yt:
        y = px(t, yt, bottom, top)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" {FONT} text-anchor="end">'
                     f"{_short(t)}</text>")  # fmt: skip
    parts.append(f'<text x="{(left + right) / 2}" y="{bottom + 34}" {FONT} '
                 f'text-anchor="middle">{escape(x_label)}</text>')  # fmt: skip
    parts.append(f'<text x="14" y="{(top + bottom) / 2}" {FONT} text-anchor="middle" '
                 f'transform="rotate(-90 14 {(top + bottom) / 2})">{escape(y_label)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        xy = [(px(x, xt, left, right), px(y, yt, bottom, top)) for x, y in pts if x > 0 and y > 0]
        if xy:
            d = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f},{y:.1f}" for j, (x, y) in enumerate(xy))
            parts.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in xy]
        ly = top + 10 + 18 * i
        parts.append(f'<rect x="{right + 12}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{right + 26}" y="{ly}" {FONT}>{escape(name)}</text>')
    return "\n".join([*parts, "</svg>"])
