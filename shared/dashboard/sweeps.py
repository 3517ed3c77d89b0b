"""The dashboard's sweep pages (pure parts): what the experiment page lists of its sweeps, and the sweep's
metric-vs-run chart: each run's last reported value of the primary metric against its index, runs the
policy stopped apart from the others, and the best value so far as a step line."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from shared.dashboard.charts import Chart, line_chart


def metric_vs_run(sweep: dict[str, Any]) -> Chart:
    props = sweep["properties"]
    runs: Sequence[dict[str, Any]] = props.get("runs") or []
    maximize = props["primaryMetric"]["goal"] == "maximize"
    kept, stopped, best = [], [], []
    so_far: float | None = None
    for run in sorted(runs, key=lambda r: r["index"]):
        value = run.get("metric")
        if value is None:
            continue
        point = (float(run["index"]), float(value))
        is_stopped = bool(run.get("earlyTerminated") or (run.get("stopReason") and run["state"] != "succeeded"))
        (stopped if is_stopped else kept).append(point)
        if not is_stopped:
            so_far = value if so_far is None else (max(so_far, value) if maximize else min(so_far, value))
        if so_far is not None:
            best.append((float(run["index"]), float(so_far)))
    chart = line_chart([("runs", "series-0", kept), ("stopped early", "series-1", stopped),
                        ("best so far", "series-2", best)], lambda v: f"run {v:g}", "run", steps=True)
    # runs are points, not a line through them; only the best so far is a line
    lines = [dataclasses.replace(line, points="") if line.label != "best so far" else line for line in chart.lines]
    return dataclasses.replace(chart, lines=lines)


def parameters_text(parameters: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in parameters.items())
