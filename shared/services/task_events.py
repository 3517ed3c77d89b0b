"""Task events from node agents, and requeues: how a running job ends or goes back to the queue.

Every event is fenced by its assignmentId: an event whose id is not the one of the job's `asg|`
row (and of the job's `internal.assignmentId`) is stale and ignored. Task results are recorded
in the asg row (ETag) before anything is decided, so a redelivered event decides the same thing
again and the fenced job transitions make the second decision a no-op: a job never completes
twice. A job that ends or is requeued frees its nodes and deletes its asg row in one transaction
(`assignments.release`), which kicks the cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared import telemetry
from shared.adapters import sched_store
from shared.adapters.resource_store import Doc
from shared.config import Settings
from shared.decisions import job_outcome
from shared.decisions.toolkits import plan_task
from shared.domain import states
from shared.domain.keys import JobRef
from shared.domain.messages import NodeAddress, NodeEvent
from shared.domain.states import JOB_TERMINAL, JobPhase
from shared.services import assignments, job_state, node_state
from shared.services.assignments import AsgRow, ConcurrentUpdates
from shared.services.scheduling import add_pending_for, run_pass_coalesced

TASK_STARTED, TASK_EXITED = "task-started", "task-exited"
STALE, STARTED, RECORDED = "stale", "started", "recorded"
PREEMPTED_STOP = "preempted"  # the stop reason of a task its node's eviction ended


def handle_task_event(settings: Settings, event: NodeEvent, now: datetime,
                      clock: Callable[[], datetime] | None = None) -> str:
    """Apply a task-started or task-exited event. Returns what it did: stale, started, recorded
    (waiting for other tasks), succeeded, failed or requeue.

    With a `clock`, a task-exited event is followed by a scheduling pass of the cluster in the same
    invocation, so the nodes the job freed take their next job without waiting for the kick that
    the release queued (that kick still comes, and joins or repeats this pass). The pass also runs
    for a redelivered, stale event: a release whose pass was lost with its process is covered."""
    if event.kind == TASK_STARTED:
        return _started(settings, event, now)
    if event.kind == TASK_EXITED:
        inline = clock is not None and bool(event.cluster_key)
        outcome = _exited(settings, event, now, kick=not inline)
        if clock is not None and inline:
            run_pass_coalesced(settings, event.cluster_key, clock)
        return outcome
    raise ValueError(f"not a task event: {event.kind!r}")


def _current(settings: Settings, event: NodeEvent) -> AsgRow | None:
    if not event.job_key or not event.assignment_id:
        return None
    asg = assignments.get(settings, event.cluster_key, event.job_key)
    return asg if asg is not None and asg.assignment_id == event.assignment_id else None


def _started(settings: Settings, event: NodeEvent, now: datetime) -> str:
    asg = _current(settings, event)
    if asg is None:
        return STALE
    ref = JobRef.from_key(asg.job_key)
    at = event.at or now.isoformat()
    doc = job_state.transition(
        settings, ref, JobPhase.RUNNING, f"task {event.task_index} started on node {event.node_id}", now,
        mutate=lambda i: i.setdefault("executionInfo", {}).setdefault("startTime", at),
        expect_assignment=asg.assignment_id, allowed_from={JobPhase.ASSIGNED})
    if doc is not None:
        _record_start_latency(doc, asg.cluster_key, now)
        return STARTED
    doc = job_state.get(settings, ref)
    if doc is None:
        assignments.send_stop(settings, [event.node_id], asg.assignment_id, "deleted")
        assignments.release(settings, asg.cluster_key, asg.job_key, asg.assignment_id, now)
        return STALE
    internal = doc.data.get("internal") or {}
    if not assignments.holds(doc, asg):
        reason = "requeue" if internal.get("phase") == JobPhase.QUEUED else "job-finished"
        assignments.send_stop(settings, [event.node_id], asg.assignment_id, reason)
        return STALE
    if internal.get("phase") == JobPhase.TERMINATING:
        # A stop may have reached the node before its Assignment did: say it again.
        assignments.send_stop(settings, [event.node_id], asg.assignment_id, internal.get("stopReason") or "terminated")
    return STARTED


def _record_start_latency(doc: Doc, cluster_key: str, started: datetime) -> None:
    submitted = (doc.data.get("internal") or {}).get("submittedAt")
    if submitted:
        telemetry.record("batchai.job.start_latency", (started - datetime.fromisoformat(submitted)).total_seconds(),
                         description="From a job's submission to its first task's start.",
                         **{"batchai.cluster": cluster_key})


def _record(settings: Settings, event: NodeEvent, now: datetime) -> AsgRow | None:
    """The asg row with the task's result in it; None when the event is stale. The result is
    written into the row once (ETag) when the job has several tasks, whose results decide together.
    A one-task job's result is only the event's: a redelivery decides the same from the event
    itself, so that write is saved."""
    for _ in range(assignments.ATTEMPTS):
        asg = _current(settings, event)
        if asg is None:
            return None
        key = str(event.task_index or 0)
        if key in asg.tasks:
            return asg
        tasks = {**asg.tasks, key: {"exitCode": event.exit_code, "stopReason": event.stop_reason,
                                    "error": event.error, "nodeId": event.node_id, "at": event.at or now.isoformat()}}
        if len(asg.nodes) <= 1 or assignments.update(settings, asg, assignments.split("tasks", tasks)):
            asg.tasks = tasks
            return asg
    raise ConcurrentUpdates(f"assignment of {event.job_key} kept changing")


def required_tasks(props: dict[str, Any], nodes: list[NodeAddress]) -> set[int]:
    required = set()
    for index in range(len(nodes)):
        try:
            plan = plan_task(props, index, nodes)
        except (ValueError, NotImplementedError):
            # A job the planner refuses fails on its node, which reports the error as the exit.
            return set(range(len(nodes)))
        if plan.required:
            required.add(index)
    return required


def _exited(settings: Settings, event: NodeEvent, now: datetime, kick: bool = True) -> str:
    asg = _record(settings, event, now)
    if asg is None:
        return STALE
    if event.stop_reason == PREEMPTED_STOP:
        # The node is being evicted: it leaves before the release could make it idle, so the requeued
        # job never goes back to it in the seconds before its own node-preempted arrives.
        node_state.make_leaving(settings, asg.cluster_key, event.node_id, PREEMPTED_STOP, now, asg.job_key, busy=True)
    ref = JobRef.from_key(asg.job_key)
    doc = job_state.get(settings, ref)
    if doc is None:
        _stop_rest(settings, asg, "deleted")
        assignments.release(settings, asg.cluster_key, asg.job_key, asg.assignment_id, now)
        return STALE
    internal = doc.data.get("internal") or {}
    if not assignments.holds(doc, asg):
        if internal.get("phase") in JOB_TERMINAL and internal.get("assignmentId") == asg.assignment_id:
            assignments.release(settings, asg.cluster_key, asg.job_key, asg.assignment_id, now)  # finish a crashed end
        return STALE
    results = {int(k): job_outcome.TaskResult(v.get("exitCode"), v.get("stopReason"), v.get("error"))
               for k, v in asg.tasks.items()}
    stopping = internal.get("stopReason") if internal.get("phase") == JobPhase.TERMINATING else None
    outcome = job_outcome.decide(results, event.task_index or 0, required_tasks(doc.data.get("properties") or {},
                                                                                  asg.nodes),
                                 stopping, internal.get("stopDetail") or "")
    if outcome.kind == job_outcome.WAIT:
        return RECORDED
    if outcome.kind == job_outcome.REQUEUE:
        requeue_job(settings, asg.job_key, asg.assignment_id, outcome.reason, outcome.count_retry, now=now,
                    task_started=bool(event.started_at))
        return outcome.kind
    finish(settings, asg, outcome, now, read=doc, kick=kick, started=_start_of(event))
    return outcome.kind


def _start_of(event: NodeEvent) -> tuple[str, str] | None:
    """A task-exited that reports its task's start too (the task ended before task-started was due):
    the start time and the reason of the running move."""
    if not event.started_at:
        return None
    return event.started_at, f"task {event.task_index} started on node {event.node_id}"


def _fold_start(internal: dict[str, Any], started: tuple[str, str]) -> None:
    """A job that ends from assigned, whose start arrived with its end: its history shows both moves
    (assigned -> running at the start, running -> the end), as two events would have."""
    at, reason = started
    history = internal.get("history") or []
    if history and history[-1]["from"] == JobPhase.ASSIGNED:
        end = history[-1]
        history[-1:] = [states.job_transition(JobPhase.ASSIGNED, JobPhase.RUNNING, reason, datetime.fromisoformat(at)),
                        states.job_transition(JobPhase.RUNNING, end["to"], end["reason"],
                                              datetime.fromisoformat(end["at"]))]
    internal.setdefault("executionInfo", {}).setdefault("startTime", at)


def finish(settings: Settings, asg: AsgRow, outcome: job_outcome.Outcome, now: datetime,
           read: Doc | None = None, kick: bool = True, started: tuple[str, str] | None = None) -> None:
    """End the job (once), stop the tasks still running, free the nodes. `read`: the job document
    as just read; `kick=False` when the caller runs the cluster's pass itself; `started`: the start
    the ending event reported (time, reason), for a job that never got its task-started."""
    target = JobPhase.SUCCEEDED if outcome.kind == job_outcome.SUCCEEDED else JobPhase.FAILED

    def end(internal: dict[str, Any]) -> None:
        if started is not None:
            _fold_start(internal, started)
        internal.setdefault("executionInfo", {}).setdefault("startTime", asg.created_at.isoformat())
        job_state.set_end(internal, now, outcome.exit_code, outcome.errors)

    ended = job_state.transition(settings, JobRef.from_key(asg.job_key), target, outcome.reason, now, mutate=end,
                                 expect_assignment=asg.assignment_id, allowed_from=assignments.HOLDING_PHASES,
                                 read=read)
    if ended is not None and started is not None and read is not None and \
            (read.data.get("internal") or {}).get("phase") == JobPhase.ASSIGNED:
        _record_start_latency(ended, asg.cluster_key, datetime.fromisoformat(started[0]))
    if outcome.stop_others:
        _stop_rest(settings, asg, outcome.stop_others)
    assignments.release(settings, asg.cluster_key, asg.job_key, asg.assignment_id, now, known=asg, kick=kick)


def _stop_rest(settings: Settings, asg: AsgRow, reason: str) -> None:
    running = [n.node_id for i, n in enumerate(asg.nodes) if str(i) not in asg.tasks]
    assignments.send_stop(settings, running, asg.assignment_id, reason)


# --- requeue ----------------------------------------------------------------------------------

def requeue_code(reason: str) -> str:
    text = reason.lower()
    for word, code in (("preempt", "Preempted"), ("lost", "NodeLost"), ("unusable", "NodeUnusable"),
                       ("scale-down", "NodeRemoved"), ("removed", "NodeRemoved")):
        if word in text:
            return code
    return "JobRequeued"


def requeue_job(settings: Settings, job_key: str, assignment_id: str, reason: str, count_retry: bool,
                now: datetime | None = None, task_started: bool = False) -> str:
    """Put a job whose assignment broke (node lost, preempted, removed) back in the queue, or fail it
    with MaxRetriesExceeded once `settings.max_retries` counted retries are used. A job that never
    started (its node died before any task began) counts no retry: it cannot be what broke the node.
    Fenced by the assignment id; the job keeps its original submit time, so it keeps its place in
    the queue (`task_started`: the ending event reported a start the job did not record). Returns
    "requeued", "failed" or "stale"."""
    now = now or datetime.now(UTC)
    ref = JobRef.from_key(job_key)
    error = job_state.error(requeue_code(reason), reason)

    def retries_after(internal: dict[str, Any]) -> int:
        started = task_started or bool((internal.get("executionInfo") or {}).get("startTime"))
        return int(internal.get("retries") or 0) + (1 if count_retry and started else 0)

    def stopped(internal: dict[str, Any]) -> str | None:
        """A job stopping for terminate, delete or the wall clock is not brought back."""
        stop = internal.get("stopReason")
        return stop if internal.get("phase") == JobPhase.TERMINATING and stop in job_outcome.FAILING_STOPS else None

    def target(internal: dict[str, Any]) -> str:
        if stopped(internal) or retries_after(internal) > settings.max_retries:
            return JobPhase.FAILED
        return JobPhase.QUEUED

    def change(internal: dict[str, Any]) -> None:
        info = internal.setdefault("executionInfo", {})
        info["errors"] = (info.get("errors") or []) + [error]
        if internal["phase"] == JobPhase.FAILED:
            stop = (internal.get("history") or [{}])[-1].get("from") == JobPhase.TERMINATING and internal.get(
                "stopReason")
            if stop in job_outcome.FAILING_STOPS:
                job_state.set_end(internal, now, None, [job_outcome.stop_error(stop, internal.get("stopDetail") or "")])
                return
            internal["retries"] = retries_after(internal)
            job_state.set_end(internal, now, None, [job_state.error(
                "MaxRetriesExceeded", f"The job was retried {settings.max_retries} times; last: {reason}")])
            return
        internal["retries"] = retries_after(internal)
        internal.update(attempt=int(internal.get("attempt") or 1) + 1, assignmentId=None, nodes=[])
        internal.pop("stopReason", None)
        internal.pop("stopDetail", None)
        info.pop("startTime", None)

    doc = job_state.transition(settings, ref, target, reason, now, mutate=change, expect_assignment=assignment_id,
                               allowed_from=assignments.HOLDING_PHASES)
    asg = next((a for a in _asgs_of(settings, job_key, doc) if a.assignment_id == assignment_id), None)
    if asg is not None:
        assignments.send_stop(settings, asg.node_ids, assignment_id, "requeue")
        assignments.release(settings, asg.cluster_key, job_key, assignment_id, now)
    if doc is None:
        return "stale"
    internal = doc.data.get("internal") or {}
    if internal.get("phase") == JobPhase.QUEUED:
        add_pending_for(settings, internal["clusterKey"], job_key, doc.data)
        sched_store.kick(settings.storage_connection_string, internal["clusterKey"])
        return "requeued"
    return "failed"


def _asgs_of(settings: Settings, job_key: str, doc: Any) -> list[AsgRow]:
    cluster_key = ((doc.data.get("internal") or {}).get("clusterKey") if doc is not None else None)
    if cluster_key is None:
        current = job_state.get(settings, JobRef.from_key(job_key))
        cluster_key = ((current.data.get("internal") or {}).get("clusterKey") if current else None)
    if cluster_key is None:
        return []
    asg = assignments.get(settings, cluster_key, job_key)
    return [asg] if asg is not None else []
