"""Jobs waiting on dependencies: release into the pending index, or fail with DependencyFailed.

A job created with `dependsOn` is queued with `internal.waitingReason` (WaitingForDependencies) and
`internal.dependencies` ([{key, name, condition}]), and stays out of the pending index. `evaluate`
reads its dependencies, decides (`shared.decisions.dependencies`) and applies: wait; release (the
waiting reason goes, then the job enters the pending index, or an array parent writes its first
children; a job whose cluster was deleted meanwhile fails with ClusterDeleted); or fail (queued ->
failed with error code DependencyFailed naming the dependency). Every
step is fenced on the waiting reason, so a doubled evaluation does nothing twice; a release whose
indexing was lost is repaired by the scheduling safety pass (a queued job missing from the index).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.adapters import sched_store
from shared.config import Settings
from shared.decisions import dependencies as decide
from shared.decisions.job_outcome import CLUSTER_DELETED
from shared.domain import job_links as rules
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.states import JobPhase
from shared.services import job_links, job_state

WAITING, RELEASED, FAILED, SETTLED = "waiting", "released", "failed", "settled"


def _phase(settings: Settings, key: str) -> str | None:
    doc = job_state.get(settings, JobRef.from_key(key))
    return None if doc is None else job_state.phase(doc)


def evaluate(settings: Settings, ref: JobRef, now: datetime) -> str | None:
    """What became of the job: waiting, released, failed, settled (it no longer waits), or None
    when it does not exist."""
    doc = job_state.get(settings, ref)
    if doc is None:
        return None
    internal = doc.data.get("internal") or {}
    dependencies: list[dict[str, Any]] = internal.get("dependencies") or []
    if not internal.get("waitingReason") or job_state.phase(doc) != JobPhase.QUEUED:
        job_links.forget_waiting(settings, ref, dependencies)
        return SETTLED
    verdict = decide.verdict([decide.Dependency(d["name"], d["condition"], _phase(settings, d["key"]))
                              for d in dependencies])
    if verdict.kind == decide.WAIT:
        return WAITING
    if verdict.kind == decide.FAIL:
        _fail(settings, ref, verdict, now)
        outcome = FAILED
    else:
        outcome = RELEASED if _release(settings, ref, now) else SETTLED
    job_links.forget_waiting(settings, ref, dependencies)
    return outcome


def _waiting(internal: dict[str, Any]) -> bool:
    return bool(internal.get("waitingReason")) and internal.get("phase", JobPhase.QUEUED) == JobPhase.QUEUED


def _fail(settings: Settings, ref: JobRef, verdict: decide.Verdict, now: datetime) -> None:
    def end(internal: dict[str, Any]) -> None:
        internal.pop("waitingReason", None)
        job_state.set_end(internal, now, None, [job_state.error(
            rules.DEPENDENCY_FAILED, verdict.message, [{"name": "dependency", "value": verdict.job}])])

    job_state.transition(settings, ref, JobPhase.FAILED, f"dependency {verdict.job} can no longer hold", now,
                         mutate=end, allowed_from={JobPhase.QUEUED}, guard=_waiting)


def _release(settings: Settings, ref: JobRef, now: datetime) -> bool:
    """Whether this call released the job (and so put it to work)."""
    released = False

    def release(internal: dict[str, Any]) -> bool:
        nonlocal released
        released = _waiting(internal)
        if released:
            internal.pop("waitingReason", None)
        return released

    doc = job_state.mutate(settings, ref, release)
    if not released or doc is None:
        return False
    if (doc.data.get("internal") or {}).get("array"):
        from shared.services import job_arrays

        job_arrays.advance(settings, ref, now)
        return True
    from shared.services.scheduling import add_pending_for

    cluster_key = doc.data["internal"]["clusterKey"]
    if not job_links.cluster_live(settings, cluster_key):
        from shared.services import job_control, removal

        name = ClusterRef.from_key(cluster_key).name
        job_control.terminate_job(settings, ref, removal.cluster_deleted_reason(name), now, stop=CLUSTER_DELETED)
        return True
    add_pending_for(settings, cluster_key, ref.key, doc.data)
    sched_store.kick(settings.storage_connection_string, cluster_key)
    return True
