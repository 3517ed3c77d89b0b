"""Stopping jobs on request: terminate (user, wall clock, cluster deletion) and the stop before a delete.

The API and the reaper record intent here; the effects follow through task events: a queued job
fails at once (JobTerminated) and leaves the pending index; an assigned or running job moves to
terminating with its stop reason and every node of its assignment gets a StopTask; the job
fails when the stopped tasks report their exits (`task_events`). An array parent's stop cascades to
its children (`job_arrays`). Everything here is idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.config import Settings
from shared.decisions.job_outcome import FAILING_STOPS, stop_error
from shared.domain.keys import JobRef
from shared.domain.states import JOB_TERMINAL, JobPhase
from shared.ports.rows import Delete
from shared.services import assignments, job_arrays, job_state
from shared.services.scheduling import pending_row_key

ATTEMPTS = 20


def stop_reason_of(reason: str, stop: str | None = None) -> tuple[str, str]:
    """The StopTask reason (one of `FAILING_STOPS`: "terminated" unless `stop` or `reason` names
    another) and the free-text detail."""
    if stop is not None:
        return stop, reason
    return (reason, "") if reason in FAILING_STOPS else ("terminated", reason)


def terminate_job(settings: Settings, job_ref: JobRef, reason: str, now: datetime | None = None,
                  stop: str | None = None) -> None:
    """Queued: out of the pending index and failed (the stop's error code: JobTerminated unless
    `stop` says otherwise). Assigned/running: terminating, StopTask to each node. Terminating: the
    StopTasks are sent again. Terminal: nothing."""
    now = now or datetime.now(UTC)
    stop, detail = stop_reason_of(reason, stop)
    for _ in range(ATTEMPTS):
        doc = job_state.get(settings, job_ref)
        if doc is None:
            return
        phase = job_state.phase(doc)
        if phase in JOB_TERMINAL:
            return
        if job_arrays.is_parent(doc.data):
            job_arrays.terminate(settings, job_ref, stop, detail, now)
            return
        if phase == JobPhase.QUEUED:
            if job_state.transition(settings, job_ref, JobPhase.FAILED, f"terminated while queued: {reason}", now,
                                    mutate=lambda i: job_state.set_end(i, now, None, [stop_error(stop, detail)]),
                                    allowed_from={JobPhase.QUEUED}) is None:
                continue
            _drop_pending(settings, job_ref, doc.data)
            return
        if phase in (JobPhase.ASSIGNED, JobPhase.RUNNING):
            written = job_state.transition(settings, job_ref, JobPhase.TERMINATING, f"stop requested: {reason}", now,
                                           mutate=lambda i: i.update(stopReason=stop, stopDetail=detail),
                                           allowed_from={JobPhase.ASSIGNED, JobPhase.RUNNING})
            if written is None:
                continue
            doc = written
        _send_stops(settings, job_ref, doc.data)
        return
    raise assignments.ConcurrentUpdates(f"job {job_ref.key} kept changing")


def stop_for_delete(settings: Settings, job_ref: JobRef, now: datetime | None = None) -> bool:
    """True when the job runs nothing and its document may be removed now; otherwise asks its
    tasks to stop (reason "deleted") and returns False: the caller polls again."""
    now = now or datetime.now(UTC)
    doc = job_state.get(settings, job_ref)
    if doc is None:
        return True
    if job_arrays.is_parent(doc.data):
        return job_arrays.stop_for_delete(settings, job_ref, now)
    internal = doc.data.get("internal") or {}
    cluster_key = internal.get("clusterKey")
    asg = assignments.get(settings, cluster_key, job_ref.key) if cluster_key else None
    phase = job_state.phase(doc)
    if phase == JobPhase.QUEUED:
        _drop_pending(settings, job_ref, doc.data)
        # An asg row of the current attempt means a pass is dispatching it: stop it once assigned.
        return asg is None or asg.attempt != int(internal.get("attempt") or 1)
    if phase in JOB_TERMINAL:
        if asg is not None and asg.assignment_id == internal.get("assignmentId"):
            assignments.release(settings, asg.cluster_key, job_ref.key, asg.assignment_id, now)
        return True
    terminate_job(settings, job_ref, "deleted", now)
    return False


def _send_stops(settings: Settings, job_ref: JobRef, data: dict[str, Any]) -> None:
    internal = data.get("internal") or {}
    cluster_key = internal.get("clusterKey")
    asg = assignments.get(settings, cluster_key, job_ref.key) if cluster_key else None
    if asg is None or asg.assignment_id != internal.get("assignmentId"):
        return
    running = [n.node_id for i, n in enumerate(asg.nodes) if str(i) not in asg.tasks]
    assignments.send_stop(settings, running, asg.assignment_id, internal.get("stopReason") or "terminated")


def _drop_pending(settings: Settings, job_ref: JobRef, data: dict[str, Any]) -> None:
    cluster_key = (data.get("internal") or {}).get("clusterKey")
    if not cluster_key:
        return
    assignments.sched(settings).write(Delete(cluster_key, pending_row_key(data, job_ref.key)))  # gone: no error
