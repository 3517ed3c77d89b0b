"""Jobs of container-instance clusters (provider "aci"): each job runs as one container group.

Owns, for clusters whose provider is a `TaskRunner`, what the scheduling pass and the node agents
do for VM clusters: taking a queued job from the cluster's pending index, starting its group,
following it, writing its logs to the stdouterr blobs, ending the job and deleting the group.
A tick (`tick`) does one step per job and returns; nothing waits for Azure.

The job's attempt is an `asg|` row with no nodes (the assignment id is the task id, so the group
name is derived from it): the same fences as VM jobs hold, and terminate/delete find it.
Order of a start: the job moves queued -> assigned (ETag, fenced by phase) with its assignment id,
then the asg row is created, then the pending row is dropped, then the group is started; each
step is repeated safely by a later tick when a crash interrupts it (a pending row of an assigned
job restores its asg row; a holding job whose group is missing gets it started). Order of an end:
logs to blobs, the job ends (fenced by assignment id), the group is deleted, the asg row released.
A cluster VM size ACI cannot run (GPU) is a permanent error recorded on the job (failed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import ports
from shared.adapters import sched_store, secret_box, storage
from shared.adapters.compute import provider_for
from shared.adapters.compute.aci import check_vm_size, container_task
from shared.adapters.compute.capabilities import ComputeRejected, ContainerTask, TaskRunner
from shared.adapters.resource_store import Doc
from shared.config import Settings
from shared.decisions.toolkits import PlanError, plan_task
from shared.domain.keys import JobRef
from shared.domain.messages import NodeAddress
from shared.domain.states import JobPhase
from shared.ports.rows import Delete, Insert, Query, Row, StaleEtag, key_fields, prefix_range
from shared.services import assignments, job_state, nodes
from shared.services.assignments import HOLDING_PHASES, AsgRow
from shared.services.guarded import Guard

ACI_NODE = "aci"  # the one "node" a container group plays in the task plan


@dataclass
class AciTick:
    started: list[str] = field(default_factory=list)  # job keys whose group was started
    running: list[str] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)  # job key -> succeeded | failed
    rejected: dict[str, str] = field(default_factory=dict)  # job key -> error code


def tick(settings: Settings, now: datetime, provider: TaskRunner | None = None,
         new_id: Callable[[], str] = lambda: uuid.uuid4().hex, clusters: Iterable[str] | None = None) -> AciTick:
    """One step for every job of every cluster with pending or assigned jobs (or of `clusters`)."""
    runner = provider if provider is not None else provider_for(settings)
    result = AciTick()
    if not isinstance(runner, TaskRunner):
        return result
    guard = Guard("container-instance jobs:")  # one bad job or cluster never stalls the others
    for key in sorted(_busy_partitions(settings) if clusters is None else set(clusters)):
        rows = guard.run(key, sched_store.partition, settings.storage_connection_string, key) or []
        for row in rows:
            if row["RowKey"].startswith(sched_store.ASSIGNMENT):
                guard.run(row["RowKey"], lambda r: _advance(settings, runner, assignments.parse(r), now, result), row)
        for row in rows:
            if row["RowKey"].startswith(sched_store.PENDING):
                guard.run(row["RowKey"], _start, settings, runner, key, row, now, new_id, result)
    guard.check()
    return result


def _busy_partitions(settings: Settings) -> set[str]:
    table = assignments.sched(settings)
    found: set[str] = set()
    for prefix in (sched_store.ASSIGNMENT, sched_store.PENDING):
        found |= {row["PartitionKey"] for row in table.query(Query(rk_range=prefix_range(prefix), select=()))}
    return found


# --- starting ---------------------------------------------------------------------------------

def _start(settings: Settings, runner: TaskRunner, key: str, row: Row, now: datetime,
           new_id: Callable[[], str], result: AciTick) -> None:
    job_key = row["jobKey"]
    ref = JobRef.from_key(job_key)
    doc = job_state.get(settings, ref)
    if doc is None or job_state.phase(doc) != JobPhase.QUEUED:
        _drop(settings, row)  # ended, or taken already (its asg row carries it on)
        return
    spec = nodes.cluster_spec(key, nodes.load_cluster(settings, key))
    try:
        check_vm_size(spec.vm_size)
        container_task("check", spec, job_key, doc.data.get("properties") or {}, "true", {})
    except ComputeRejected as err:
        _reject(settings, ref, row, err.code, err.message, now, result)
        return
    attempt = int((doc.data.get("internal") or {}).get("attempt") or 1)
    entity = assignments.new_entity(key, job_key, new_id(), [], attempt, 1, now)
    entity["dispatched"] = True  # nothing to send: no node agents take part
    # An earlier, interrupted tick may have written it: carry on with its assignment id.
    with contextlib.suppress(StaleEtag):
        assignments.sched(settings).write(Insert(*key_fields(entity)))
    asg = assignments.get(settings, key, job_key)
    if asg is not None:
        _take(settings, runner, asg, doc, now, result)
    _drop(settings, row)


def _take(settings: Settings, runner: TaskRunner, asg: AsgRow, doc: Doc, now: datetime, result: AciTick) -> None:
    """queued -> assigned with the asg row's assignment id (fenced by phase and attempt), then start."""
    def assign(i: dict[str, Any]) -> None:
        i.update(assignmentId=asg.assignment_id, clusterKey=asg.cluster_key)

    written = job_state.transition(settings, JobRef.from_key(asg.job_key), JobPhase.ASSIGNED,
                                   "a container group was asked for it", now, mutate=assign,
                                   allowed_from={JobPhase.QUEUED},
                                   guard=lambda i: int(i.get("attempt") or 1) == asg.attempt, read=doc)
    if written is not None:
        _run(settings, runner, asg, written, now, result)


def _run(settings: Settings, runner: TaskRunner, asg: AsgRow, doc: Doc, now: datetime, result: AciTick) -> None:
    try:
        runner.run_task(_task(settings, asg, doc))
    except (ComputeRejected, PlanError) as err:
        code = err.code if isinstance(err, ComputeRejected) else err.args[0]
        _end(settings, runner, asg, JobPhase.FAILED, None, [job_state.error(code, str(err))], now, result)
        return
    result.started.append(asg.job_key)


def _task(settings: Settings, asg: AsgRow, doc: Doc) -> ContainerTask:
    # The stored secrets leave here, opened, for the container group's secure environment and shares.
    props = secret_box.open_all(settings, doc.data.get("properties") or {})
    spec = nodes.cluster_spec(asg.cluster_key, nodes.load_cluster(settings, asg.cluster_key))
    spec = dataclasses.replace(spec, properties=secret_box.open_all(settings, spec.properties))
    plan = plan_task(props, 0, [NodeAddress(ACI_NODE, "127.0.0.1")])
    if plan.command is None:
        raise ComputeRejected("UnsupportedOnAci", "the job's toolkit needs a gang of nodes")
    return container_task(asg.assignment_id, spec, asg.job_key, props, plan.command, plan.env)


# --- following --------------------------------------------------------------------------------

def _advance(settings: Settings, runner: TaskRunner, asg: AsgRow, now: datetime, result: AciTick) -> None:
    doc = job_state.get(settings, JobRef.from_key(asg.job_key))
    if doc is not None and job_state.phase(doc) == JobPhase.QUEUED \
            and int((doc.data.get("internal") or {}).get("attempt") or 1) == asg.attempt:
        _take(settings, runner, asg, doc, now, result)  # a start interrupted between its two writes
        return
    if not assignments.holds(doc, asg):
        runner.delete_task(asg.assignment_id)
        assignments.release(settings, asg.cluster_key, asg.job_key, asg.assignment_id, now, known=asg, kick=False)
        return
    assert doc is not None
    internal = doc.data.get("internal") or {}
    if internal.get("phase") == JobPhase.TERMINATING:
        from shared.services.job_control import stop_error

        stop = internal.get("stopReason") or "terminated"
        _write_logs(settings, asg, doc, runner.fetch_logs(asg.assignment_id))
        _end(settings, runner, asg, JobPhase.FAILED, None, [stop_error(stop, internal.get("stopDetail") or "")],
             now, result)
        return
    status = runner.task_status(asg.assignment_id)
    if status.state == "missing":
        _run(settings, runner, asg, doc, now, result)
    elif status.state == "running":
        def started(i: dict[str, Any]) -> None:
            i.setdefault("executionInfo", {}).setdefault("startTime", now.isoformat())

        if job_state.transition(settings, JobRef.from_key(asg.job_key), JobPhase.RUNNING, "its container runs", now,
                                mutate=started, expect_assignment=asg.assignment_id,
                                allowed_from={JobPhase.ASSIGNED}, read=doc) is not None:
            result.running.append(asg.job_key)
    elif status.state in ("succeeded", "failed"):
        _write_logs(settings, asg, doc, runner.fetch_logs(asg.assignment_id))
        errors = None
        if status.state == "failed":
            errors = [job_state.error("ContainerGroupFailed" if status.exit_code is None else "JobFailed",
                                      status.detail or f"the container exited with code {status.exit_code}")]
        target = JobPhase.SUCCEEDED if status.state == "succeeded" else JobPhase.FAILED
        _end(settings, runner, asg, target, status.exit_code, errors, now, result)


def _end(settings: Settings, runner: TaskRunner, asg: AsgRow, target: JobPhase, exit_code: int | None,
         errors: list[dict[str, Any]] | None, now: datetime, result: AciTick) -> None:
    def end(internal: dict[str, Any]) -> None:
        internal.setdefault("executionInfo", {}).setdefault("startTime", asg.created_at.isoformat())
        job_state.set_end(internal, now, exit_code, errors)

    written = job_state.transition(settings, JobRef.from_key(asg.job_key), target, f"its container group {target}",
                                   now, mutate=end, expect_assignment=asg.assignment_id,
                                   allowed_from=HOLDING_PHASES)
    if written is not None:
        result.ended[asg.job_key] = str(target)
    runner.delete_task(asg.assignment_id)
    assignments.release(settings, asg.cluster_key, asg.job_key, asg.assignment_id, now, known=None, kick=False)


def _write_logs(settings: Settings, asg: AsgRow, doc: Doc, logs: str) -> None:
    """ACI holds one stream per container (stdout and stderr interleaved): it is the task's stdout."""
    ref = JobRef.from_key(asg.job_key)
    segment = (doc.data.get("properties") or {}).get("jobOutputDirectoryPathSegment") or ""
    prefix = storage.output_prefix(ref.experiment.workspace.workspace, ref.experiment.name, ref.name, segment)
    blobs = ports.of(settings.storage_connection_string).blobs
    blobs.write(storage.C_OUTPUTS, f"{prefix}/stdouterr/stdout.txt", logs.encode())
    blobs.write(storage.C_OUTPUTS, f"{prefix}/stdouterr/stderr.txt", b"")


# --- refusals and the index -------------------------------------------------------------------

def _reject(settings: Settings, ref: JobRef, row: Row, code: str, message: str, now: datetime,
            result: AciTick) -> None:
    written = job_state.transition(settings, ref, JobPhase.FAILED, f"refused by container instances: {code}", now,
                                   mutate=lambda i: job_state.set_end(i, now, None, [job_state.error(code, message)]),
                                   allowed_from={JobPhase.QUEUED})
    if written is not None:
        result.rejected[ref.key] = code
    _drop(settings, row)


def _drop(settings: Settings, row: Row) -> None:
    """Delete the pending row as read (If-Match): one that changed or is gone since is left alone."""
    with contextlib.suppress(StaleEtag):
        assignments.sched(settings).write(Delete(row["PartitionKey"], row["RowKey"], row.etag))
