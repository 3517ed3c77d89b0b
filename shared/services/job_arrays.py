"""Array jobs: the parent's bookkeeping (`internal.array`, written only here after creation), its
child jobs, and its state derived from theirs.

A parent never enters the pending index. `advance` reads the parent and its live children, decides
(`shared.decisions.arrays`), records the bookkeeping with the parent's ETag, moves the parent
(queued -> running once a child left the queue; -> succeeded or failed once nothing is left to
run, failed with the failing indices in its errors), then writes the children it decided:
`{name}-{i}`, ordinary jobs of the same cluster carrying `internal.arrayParent` and the
properties `arrayIndex`/`arrayCount` (the node gives a task AZ_BATCHAI_ARRAY_INDEX/_COUNT). A child
is counted live from the moment it is decided, so at most `maxConcurrent` are ever not ended.

Terminate and delete of a parent cascade (`terminate`, `stop_for_delete`): the parent moves to
terminating (no child is decided any more), its live children are terminated (deleted), and it
fails once none is left. Advances run on every child's end, after creation, and on the safety timer.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any

from shared.adapters import sched_store
from shared.adapters.resource_store import Doc, StaleEtag
from shared.config import Settings
from shared.decisions import arrays as decide
from shared.decisions.job_outcome import CLUSTER_DELETED, stop_error
from shared.domain import resources
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.states import JOB_TERMINAL, JobPhase
from shared.ports.rows import Query, prefix_range
from shared.services import job_links, job_state
from shared.services.api_common import utcnow

ATTEMPTS = 20
PARENT_ONLY = ("array", "dependsOn", "creationTime", "provisioningState", "provisioningStateTransitionTime")


def is_parent(data: dict[str, Any]) -> bool:
    return bool((data.get("internal") or {}).get("array"))


def child_ref(parent: JobRef, index: int) -> JobRef:
    return parent.experiment.job(decide.child_name(parent.name, index))


def _children(settings: Settings, parent: JobRef, state: decide.ArrayState) -> dict[int, str | None]:
    """The phase of each live child (None: not written, or deleted), in one query of the names."""
    prefix = f"{parent.name.lower()}-"
    rows = job_state.jobs(settings).table.query(Query(pk=parent.experiment.job_pk, rk_range=prefix_range(prefix),
                                                      select=("phase",)))
    found: dict[int, str] = {}
    for row in rows:
        suffix = row.rk[len(prefix):]
        if suffix.isdigit() and str(int(suffix)) == suffix:
            found[int(suffix)] = row.get("phase") or JobPhase.QUEUED
    return {i: found.get(i) for i in state.live()}


def advance(settings: Settings, ref: JobRef, now: datetime) -> str | None:
    """One idempotent step of an array parent; its phase afterwards (None: no such array job)."""
    for _ in range(ATTEMPTS):
        doc = job_state.get(settings, ref)
        if doc is None or not is_parent(doc.data):
            return None
        internal = doc.data["internal"]
        phase = job_state.phase(doc)
        if phase in JOB_TERMINAL:
            job_links.forget(settings, job_links.ARRAYS, ref.key)
            return phase
        state = decide.ArrayState.from_dict(internal["array"])
        stopping = phase == JobPhase.TERMINATING or bool(internal.get("deletingSince"))
        children = _children(settings, ref, state)
        may_create = not internal.get("waitingReason") and state.created < state.count
        if may_create and not stopping and not job_links.cluster_live(settings, internal["clusterKey"]):
            from shared.services import removal

            name = ClusterRef.from_key(internal["clusterKey"]).name
            terminate(settings, ref, CLUSTER_DELETED, removal.cluster_deleted_reason(name), now)
            continue
        step = decide.advance(state, children, stopping, may_create)
        if step.state != state:
            data = copy.deepcopy(doc.data)
            data["internal"]["array"] = step.state.to_dict()
            try:
                doc = job_state.jobs(settings).replace(doc, data)
            except StaleEtag:
                continue
        moved = _move(settings, ref, doc, step, stopping, now)
        if step.create:
            _write_children(settings, ref, moved or doc, step.create)
            _written(settings, ref, step.state.created, now)
        return job_state.phase(moved) if moved else phase
    raise StaleEtag(f"array job {ref.key} kept changing")


def _move(settings: Settings, ref: JobRef, doc: Doc, step: decide.ArrayStep, stopping: bool,
          now: datetime) -> Doc | None:
    """The parent's phase moves of a step; the document after them (None: none was made)."""
    moved: Doc | None = None
    if job_state.phase(doc) == JobPhase.QUEUED and not stopping and (step.start or step.end):
        moved = job_state.transition(
            settings, ref, JobPhase.RUNNING, "a child job left the queue", now, allowed_from={JobPhase.QUEUED},
            mutate=lambda i: i.setdefault("executionInfo", {}).setdefault("startTime", now.isoformat()), read=doc)
        doc = moved or doc
    if step.end is None:
        return moved
    errors = _errors(doc.data["internal"], step.state, stopping)
    target = JobPhase.SUCCEEDED if step.end == decide.SUCCEEDED else JobPhase.FAILED
    reason = f"{len(step.state.ended)} of {step.state.count} array tasks ended" + (" (stopped)" if stopping else "")
    ended = job_state.transition(settings, ref, target, reason, now,
                                 mutate=lambda i: job_state.set_end(i, now, None, errors),
                                 allowed_from={JobPhase.QUEUED, JobPhase.RUNNING, JobPhase.TERMINATING}, read=doc)
    if ended is not None:
        job_links.forget(settings, job_links.ARRAYS, ref.key)
    return ended or moved


def _errors(internal: dict[str, Any], state: decide.ArrayState, stopping: bool) -> list[dict[str, Any]]:
    errors = []
    if stopping:
        errors.append(stop_error(internal.get("stopReason") or "terminated", internal.get("stopDetail") or ""))
    failed = state.failed()
    if failed:
        shown = ", ".join(str(i) for i in failed)
        errors.append(job_state.error(
            "ArrayTaskFailed", f"{len(failed)} of {state.count} array tasks did not succeed: indices {shown}.",
            [{"name": "failedIndices", "value": ",".join(str(i) for i in failed)}]))
    return errors


def child_document(parent: dict[str, Any], parent_ref: JobRef, index: int, now: datetime) -> dict[str, Any]:
    """A child job: the parent's properties (secrets stay sealed as stored) with its index and count."""
    props = {k: copy.deepcopy(v) for k, v in parent["properties"].items() if k not in PARENT_ONLY}
    props.update(arrayIndex=index, arrayCount=int(parent["internal"]["array"]["count"]))
    cluster = ClusterRef.from_key(parent["internal"]["clusterKey"])
    data = resources.new_job(child_ref(parent_ref, index), props, cluster, props.get("toolType") or "custom",
                             str(uuid.uuid4()), now)
    data["internal"]["arrayParent"] = {"job": parent_ref.key, "index": index}
    if parent["internal"].get("traceparent"):
        data["internal"]["traceparent"] = parent["internal"]["traceparent"]
    return data


def _write_children(settings: Settings, parent: JobRef, doc: Doc, indices: tuple[int, ...]) -> None:
    """Write the decided children (a child already written is left as it is) and index them."""
    cluster_key = doc.data["internal"]["clusterKey"]
    jobs = job_state.jobs(settings)
    for index in indices:
        ref = child_ref(parent, index)
        data = child_document(doc.data, parent, index, utcnow())  # its clock after the ends that made room
        try:
            jobs.insert(ref.experiment.job_pk, ref.name.lower(), data)
        except StaleEtag:
            continue  # written by an earlier advance; the safety pass indexes it if that one stopped short
        from shared.services.scheduling import add_pending_for

        add_pending_for(settings, cluster_key, ref.key, data)
    sched_store.kick(settings.storage_connection_string, cluster_key)


def _written(settings: Settings, ref: JobRef, created: int, now: datetime) -> None:
    """Record that children [0, created) were written; if the parent began stopping meanwhile,
    stop them too (its cascade may have looked before they existed)."""
    def change(internal: dict[str, Any]) -> bool:
        array = internal.get("array") or {}
        if int(array.get("written") or 0) >= created:
            return False
        array["written"] = created
        return True

    doc = job_state.mutate(settings, ref, change)
    if doc is not None and (job_state.phase(doc) == JobPhase.TERMINATING or doc.data["internal"].get("deletingSince")
                            or job_state.phase(doc) in JOB_TERMINAL):
        _stop_children(settings, ref, doc, now)


def _stop_children(settings: Settings, ref: JobRef, doc: Doc, now: datetime) -> None:
    from shared.services import job_control

    internal = doc.data["internal"]
    stop, detail = internal.get("stopReason") or "terminated", internal.get("stopDetail") or ""
    state = decide.ArrayState.from_dict(internal["array"])
    for index in range(state.created):
        if index not in state.ended:
            job_control.terminate_job(settings, child_ref(ref, index), detail or stop, now, stop=stop)


def terminate(settings: Settings, ref: JobRef, stop: str, detail: str, now: datetime) -> None:
    """Stop the array (`stop`: a stop reason of `job_outcome.FAILING_STOPS`): the parent moves to
    terminating, its live children are terminated, and it fails once none is left."""
    job_state.transition(settings, ref, JobPhase.TERMINATING, f"stop requested: {detail or stop}", now,
                         mutate=lambda i: i.update(stopReason=stop, stopDetail=detail),
                         allowed_from={JobPhase.QUEUED, JobPhase.RUNNING})
    doc = job_state.get(settings, ref)
    if doc is None or job_state.phase(doc) in JOB_TERMINAL:
        return
    _stop_children(settings, ref, doc, now)
    advance(settings, ref, now)


def stop_for_delete(settings: Settings, ref: JobRef, now: datetime) -> bool:
    """True once the parent's children are all deleted (the parent may go); until then it stops
    and deletes them, one idempotent step per call."""
    from shared.services import removal

    doc = job_state.get(settings, ref)
    if doc is None:
        return True
    if job_state.phase(doc) not in JOB_TERMINAL:
        terminate(settings, ref, "deleted", "", now)
    doc = job_state.get(settings, ref)
    if doc is None:
        return True
    state = decide.ArrayState.from_dict(doc.data["internal"]["array"])
    gone = [removal.remove_job(settings, child_ref(ref, i)) for i in range(state.created) if _owned(settings, ref, i)]
    if all(gone):
        job_links.forget(settings, job_links.ARRAYS, ref.key)
    return all(gone)


def _owned(settings: Settings, parent: JobRef, index: int) -> bool:
    """Whether the child's name holds this parent's child (never delete a job of another's making)."""
    doc = job_state.get(settings, child_ref(parent, index))
    return doc is not None and ((doc.data.get("internal") or {}).get("arrayParent") or {}).get("job") == parent.key
