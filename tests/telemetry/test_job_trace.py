"""A job's trace, from the API call to its task's exit, in the local stack's telemetry files; and the
host's metrics of the same run."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

from azure.mgmt.batchai import models

from shared.adapters import storage
from shared.domain.states import NodeState
from shared.telemetry import telemetry_dir
from tests.e2e.conftest import Stack
from tests.polling import wait_until
from tests.telemetry.otlp import Span, log_records, points, spans

WS, EXP, CLUSTER = "otel", "traced", "one"
SERVER = 2  # OTLP SpanKind SERVER
# The kick the submission queued is handled in its trace; the pass that places the job may be another
# one (one pass per cluster at a time), so the dispatch joins the job's trace through its document.
# A task that ends within a second reports its start with its end: no task-started span then.
HOST_SPANS = {"schedule kick", "dispatch", "node event task-exited"}
TIMERS = {"reconcile", "reaper", "scheduling safety"}
AGENT_SPANS = {"node assignment", "task", "task exit"}


def _trace(directory: Path, trace_id: str, caller_span: str) -> list[Span] | None:
    """The trace's spans once every expected one is written and each has its parent written too."""
    found = [s for s in spans(directory) if s.trace_id == trace_id]
    names = {(s.service, s.name) for s in found}
    wanted = {("batchai-host", n) for n in HOST_SPANS} | {("batchai-agent", n) for n in AGENT_SPANS}
    ids = {s.span_id for s in found} | {caller_span}
    if not wanted <= names or any(s.parent_id not in ids for s in found):
        return None
    return found


def test_one_trace_links_the_api_call_the_host_and_the_agent_to_the_task_exit(
        local_stack: dict[str, Any]) -> None:
    stack = Stack(local_stack)
    stack.workspace(WS)
    stack.client.experiments.begin_create(stack.rg, WS, EXP).result()
    stack.manual_cluster(WS, CLUSTER, 1)
    stack.idle_nodes(WS, CLUSTER, 1)
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    params = models.JobCreateParameters(
        cluster=models.ResourceId(id=stack.cluster_id(WS, CLUSTER)),
        std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/logs",
        custom_toolkit_settings=models.CustomToolkitSettings(command_line=f"{sys.executable} -c 'print(42)'"))
    stack.client.jobs.begin_create(stack.rg, WS, EXP, "job", params,
                                   headers={"traceparent": f"00-{trace_id}-{caller_span}-01"}).result()
    assert stack.wait_job(WS, EXP, "job").execution_state == "succeeded"

    directory = telemetry_dir(stack.state_dir)
    trace = wait_until(lambda: _trace(directory, trace_id, caller_span), 60,
                       what="the job's trace, whole, in the telemetry files")
    by_id = {s.span_id: s for s in trace}
    server = [s for s in trace if s.parent_id == caller_span]
    assert [(s.service, s.kind) for s in server] == [("batchai-host", SERVER)], server
    assert server[0].name.startswith("PUT ") and "{jobName}" in server[0].name

    def chain(span: Span) -> list[str]:
        names = []
        while span.span_id in by_id:
            names.append(span.name)
            span = by_id.get(span.parent_id) or Span("", "", "", "", "", 0, {})
        return names

    exited = next(s for s in trace if s.name == "node event task-exited")
    path = chain(exited)
    assert path[:5] == ["node event task-exited", "task exit", "task", "node assignment", "dispatch"], path
    assert path[-1] == server[0].name  # ... up to the API call
    assert next(s for s in trace if s.name == "task exit").attributes["batchai.exit_code"] == 0
    logged = wait_until(lambda: [r for r in log_records(directory) if r[:2] == ("batchai-agent", trace_id)], 30,
                        what="the agent's log records in the job's trace")
    assert any("assignment" in body for _, _, body in logged), logged
    assert next(s for s in trace if s.name == "task").attributes["batchai.job"].endswith(f"|{EXP}|job")


def test_the_host_measures_queues_pending_jobs_nodes_passes_and_start_latency(local_stack: dict[str, Any]) -> None:
    stack = Stack(local_stack)
    stack.workspace(WS)
    stack.client.experiments.begin_create(stack.rg, WS, EXP).result()
    stack.manual_cluster(WS, CLUSTER, 1)
    stack.idle_nodes(WS, CLUSTER, 1)
    stack.submit(WS, EXP, "measured", CLUSTER, f"{sys.executable} -c 'print(1)'")
    assert stack.wait_job(WS, EXP, "measured").execution_state == "succeeded"
    directory, cluster_key = telemetry_dir(stack.state_dir), stack.cluster_key(WS, CLUSTER)

    def node_counts(metrics: dict[str, list[Any]]) -> dict[int, dict[str, float]]:
        by_time: dict[int, dict[str, float]] = {}
        for p in metrics.get("batchai.cluster.nodes", []):
            if p.attributes["batchai.cluster"] == cluster_key:
                by_time.setdefault(p.time, {})[p.attributes["batchai.node.state"]] = p.value
        return by_time

    def measured() -> dict[str, list[Any]] | None:
        by_name: dict[str, list[Any]] = {}
        for p in points(directory, "metrics-host.jsonl"):
            by_name.setdefault(p.metric, []).append(p)
        wanted = {"batchai.queue.depth", "batchai.cluster.pending_jobs", "batchai.cluster.nodes",
                  "batchai.scheduling.pass.duration", "batchai.job.start_latency", "batchai.timer.pass.duration"}
        timers = {p.attributes["batchai.pass"] for p in by_name.get("batchai.timer.pass.duration", [])}
        # an export may come before the node's row was counted: wait for one that counts the cluster's one node
        counted = any(sum(counts.values()) == 1 for counts in node_counts(by_name).values())
        return by_name if wanted <= set(by_name) and timers >= TIMERS and counted else None

    metrics = wait_until(measured, 120, what="the host's metrics, one export counting the cluster's node")
    queues = {p.attributes["batchai.queue"] for p in metrics["batchai.queue.depth"]}
    assert queues == {storage.Q_KICKS, storage.Q_EVENTS}, queues
    by_time = node_counts(metrics)
    assert by_time and all(set(counts) == {s.value for s in NodeState} for counts in by_time.values()), by_time
    assert all(sum(counts.values()) <= 1 for counts in by_time.values()), by_time  # never more than its one node
    assert any(p.attributes["batchai.cluster"] == cluster_key for p in metrics["batchai.cluster.pending_jobs"])
    assert any(p.value >= 1 and p.attributes.get("batchai.cluster") == cluster_key
               for p in metrics["batchai.job.start_latency"])
    assert metrics["batchai.scheduling.pass.duration"] and all(
        p.value >= 0 for p in metrics["batchai.scheduling.pass.duration"])
    timers = {p.attributes["batchai.pass"] for p in metrics["batchai.timer.pass.duration"] if p.value >= 0}
    assert timers == TIMERS, timers
