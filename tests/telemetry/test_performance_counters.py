"""A cluster with `performanceCountersSettings`: its node's counters and its running job's process
counters reach the local stack's telemetry files."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from azure.mgmt.batchai import models

from shared.telemetry import telemetry_dir
from tests.e2e.conftest import Stack
from tests.polling import wait_until
from tests.telemetry.otlp import Point, points

WS, EXP, CLUSTER = "otel-counters", "counted", "counted"
NODE_COUNTERS = {"system.cpu.utilization", "system.memory.usage", "system.filesystem.utilization",
                 "system.disk.io", "system.network.io", "batchai.node.gpu.count"}
BLOCK = 32 * 2**20
# Runs until the test has seen its counters, holding memory (written, so resident) for them to show.
HOLD = ("import os, time\nblock = b'x' * " + str(BLOCK) + "\n"
        "while not os.path.exists({stop!r}):\n    time.sleep(0.2)\n")


def _counters(directory: Path) -> list[Point]:
    return points(directory, "metrics-counters-*.jsonl")


def test_a_cluster_with_performance_counters_reports_node_and_job_counters(local_stack: dict[str, Any]) -> None:
    stack = Stack(local_stack)
    stack.workspace(WS)
    stack.client.experiments.begin_create(stack.rg, WS, EXP).result()
    component = (f"/subscriptions/{stack.sub}/resourceGroups/{stack.rg}/providers/microsoft.insights"
                 f"/components/insights")
    counters = models.PerformanceCountersSettings(app_insights_reference=models.AppInsightsReference(
        component=models.ResourceId(id=component), instrumentation_key=str(uuid.uuid4())))
    stack.manual_cluster(WS, CLUSTER, 1, node_setup=models.NodeSetup(mount_volumes=stack.share_volumes(),
                                                                     performance_counters_settings=counters))
    stack.idle_nodes(WS, CLUSTER, 1)
    here, there = stack.scratch("counters")
    (here / "hold.py").write_text(HOLD.format(stop=str(here / "stop")))
    stack.submit(WS, EXP, "held", CLUSTER, f"{sys.executable} {there}/hold.py")
    directory = telemetry_dir(stack.state_dir)

    def job_counters() -> list[Point] | None:
        found = [p for p in _counters(directory) if p.metric == "process.memory.usage"
                 and str(p.attributes.get("batchai.job", "")).endswith(f"|{EXP}|held")]
        return found if any(p.value >= BLOCK for p in found) else None  # its block, once allocated

    try:
        wait_until(job_counters, 120, what="the job's process counters, with the memory it holds")
    finally:
        (here / "stop").touch()
    assert stack.wait_job(WS, EXP, "held").execution_state == "succeeded"

    seen = _counters(directory)
    ours = [p for p in seen if p.resource.get("batchai.cluster") == stack.cluster_key(WS, CLUSTER)]
    assert {p.metric for p in ours} >= NODE_COUNTERS, sorted({p.metric for p in ours})
    assert {p.resource["batchai.appinsights.component"] for p in ours} == {component}
    by_metric = {p.metric: p for p in ours}
    assert 0 <= by_metric["system.cpu.utilization"].value <= 1
    assert by_metric["system.memory.usage"].value > 0
    assert by_metric["batchai.node.gpu.count"].value == 0  # no GPUs on this machine
    assert {p.attributes["network.io.direction"] for p in ours if p.metric == "system.network.io"} == {
        "receive", "transmit"}
    cpu = [p for p in ours if p.metric == "process.cpu.time"
           and str(p.attributes.get("batchai.job", "")).endswith(f"|{EXP}|held")]
    assert cpu and all(p.value > 0 for p in cpu)
