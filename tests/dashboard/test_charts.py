"""Chart geometry: every drawn point keeps the value it stands for, inside the plot; counts are drawn as steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.dashboard.charts import HEIGHT, LEFT, RIGHT, TOP, WIDTH, cluster_chart, line_chart, metric_charts
from shared.dashboard.cluster_history import Sample

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def sample(minute: int, nodes: int, queued: int) -> Sample:
    return Sample(T0 + timedelta(minutes=minute), nodes, nodes, 0, 0, 0, 0, queued, queued, nodes + queued)


def test_one_chart_per_metric_one_line_per_task_with_the_exact_values() -> None:
    series = [{"name": "loss", "source": "stdout.txt", "points": [{"step": 0, "value": 0.1 + 0.2},
                                                                  {"step": 5, "value": 1e-7}]},
              {"name": "loss", "source": "stdout-1.txt", "points": [{"step": 1, "value": 2.0}]},
              {"name": "acc", "source": "stdout.txt", "points": [{"step": 0, "value": 0.5}]}]
    charts = dict(metric_charts(series))
    assert list(charts) == ["acc", "loss"]
    lines = {line.label: line for line in charts["loss"].lines}
    assert [(d.x, d.y) for d in lines["stdout.txt"].dots] == [(0.0, 0.1 + 0.2), (5.0, 1e-7)]
    assert [(d.x, d.y) for d in lines["stdout-1.txt"].dots] == [(1.0, 2.0)]
    for line in charts["loss"].lines:
        for d in line.dots:
            assert LEFT <= d.cx <= WIDTH - RIGHT and TOP <= d.cy <= HEIGHT
    highest = max((d for line in charts["loss"].lines for d in line.dots), key=lambda d: d.y)
    assert highest.cy == TOP  # the largest value at the top, the smallest at the bottom


def test_a_single_point_and_a_flat_line_still_draw() -> None:
    chart = line_chart([("x", "series-0", [(3.0, 7.0)])], str, "step")
    assert not chart.empty and len(chart.lines[0].dots) == 1 and chart.x_ticks[0][2] == "middle"
    assert line_chart([("x", "series-0", [])], str, "step").empty


def test_the_cluster_chart_draws_counts_as_steps_and_ends_with_the_count_now() -> None:
    samples = [sample(0, 0, 2), sample(1, 2, 0)]
    chart = cluster_chart(samples, {"currentNodeCount": 1}, T0 + timedelta(minutes=1, seconds=30))
    nodes = next(line for line in chart.lines if line.label == "nodes")
    assert [d.y for d in nodes.dots] == [0.0, 2.0, 1.0]
    assert len(nodes.points.split()) == 2 * len(nodes.dots) - 1  # a horizontal then a vertical move per change
    queued = next(line for line in chart.lines if line.label == "queued jobs")
    assert [d.y for d in queued.dots] == [2.0, 0.0]
    assert [t[1] for t in chart.x_ticks] == ["09:00 UTC", "09:01 UTC"]
    assert cluster_chart([], {"currentNodeCount": 3}, T0).empty
