"""Line charts as SVG geometry for the templates (pure): metric series by step, and a cluster's node count
against its queued jobs over time. Each drawn point keeps the value it stands for, so the page says
exactly what it plots (the templates put it in data attributes and a tooltip)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.dashboard.cluster_history import Sample

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 12, 28
MAX_DOTS = 400  # points drawn as markers; longer series are drawn as lines only


@dataclass(frozen=True)
class Dot:
    cx: float
    cy: float
    x: float  # the value it stands for on each axis
    y: float


@dataclass(frozen=True)
class Line:
    label: str
    css: str  # the line's class: its colour and dash in the stylesheet
    points: str  # the polyline's "x,y x,y ..."
    dots: list[Dot] = field(default_factory=list)


@dataclass(frozen=True)
class Chart:
    lines: list[Line]
    x_ticks: list[tuple[float, str, str]]  # (position, label, text-anchor)
    y_ticks: list[tuple[float, str]]
    x_label: str
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not any(line.dots or line.points for line in self.lines)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _range(values: Sequence[float], floor_zero: bool) -> tuple[float, float]:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if floor_zero:
        lo = min(lo, 0.0)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - (0 if floor_zero and lo == 0 else pad), hi + pad
    return lo, hi


def line_chart(series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]], x_text: Callable[[float], str],
               x_label: str, floor_zero: bool = False, steps: bool = False) -> Chart:
    """Lines over shared axes. `steps`: values hold until the next point (counts), not straight segments."""
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts]
    x_lo, x_hi = _range(xs, False)
    y_lo, y_hi = _range(ys, floor_zero)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return round(LEFT + (x - x_lo) / (x_hi - x_lo) * inner_w, 2)

    def py(y: float) -> float:
        return round(TOP + (1 - (y - y_lo) / (y_hi - y_lo)) * inner_h, 2)

    lines = []
    for label, css, pts in series:
        ordered = sorted(pts)
        coords: list[tuple[float, float]] = []
        for i, (x, y) in enumerate(ordered):
            if steps and i:
                coords.append((px(x), py(ordered[i - 1][1])))
            coords.append((px(x), py(y)))
        dots = [Dot(px(x), py(y), x, y) for x, y in ordered] if len(ordered) <= MAX_DOTS else []
        lines.append(Line(label, css, " ".join(f"{a},{b}" for a, b in coords), dots))
    y_ticks = [(py(v), _number(v)) for v in _ticks(y_lo, y_hi)]
    ends = [x_lo, x_hi] if xs and min(xs) != max(xs) else xs[:1]
    x_ticks = [(px(v), x_text(v), "middle" if len(ends) == 1 else ("start", "end")[i]) for i, v in enumerate(ends)]
    return Chart(lines, x_ticks, y_ticks, x_label)


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(count + 2) if first + i * step <= hi + 1e-9]


def metric_charts(series: Sequence[dict[str, Any]]) -> list[tuple[str, Chart]]:
    """One chart per metric name, one line per task output that logged it (series as the metrics API gives)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for one in series:
        by_name.setdefault(one["name"], []).append(one)
    charts = []
    for name, group in sorted(by_name.items()):
        lines = [(one["source"], f"series-{i % 6}", [(float(p["step"]), float(p["value"])) for p in one["points"]])
                 for i, one in enumerate(sorted(group, key=lambda s: s["source"]))]
        charts.append((name, line_chart(lines, lambda v: f"{v:g}", "step")))
    return charts


def cluster_chart(samples: Sequence[Sample], properties: dict[str, Any], now: datetime) -> Chart:
    """Nodes, queued jobs and the autoscaler's target per minute, and the node count now."""
    def at(s: Sample) -> float:
        return s.at.timestamp()
    nodes = [(at(s), float(s.nodes)) for s in samples]
    if samples:
        nodes.append((now.timestamp(), float(properties.get("currentNodeCount") or 0)))
    return line_chart([("nodes", "nodes", nodes),
                       ("queued jobs", "queued", [(at(s), float(s.queued_jobs)) for s in samples]),
                       ("target nodes", "target", [(at(s), float(s.wanted)) for s in samples])],
                      lambda v: datetime.fromtimestamp(v, UTC).strftime("%H:%M UTC"), "time", floor_zero=True,
                      steps=True)
