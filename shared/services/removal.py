"""Deletion of every resource with its children, and the long-running operations that track it.

The API records intent only: a DELETE marks the resource deleting (`internal.deletingSince`; a file
server on vmss shows provisioningState `deleting` for its reconciler), records an operation
(InProgress, indexed as in flight) and answers 202; a missing resource answers 204. A resource being
deleted renders provisioningState `deleting` and refuses new children (409). Terminate records the
job's stop (`job_control`) and, while tasks stop, an operation too. GET of an operation is a pure
read (`poll`).

`reconcile_all` (run by the reconcile timer) advances every operation in flight, each one guarded
so that one failing cascade never stalls the others, and finishes it when nothing is left; every
step is idempotent, so a missed, doubled or late tick, a crash, a retried DELETE or a child created
during the deletion is handled by a later tick. Cascades:
- Job: `job_control.stop_for_delete` stops its tasks (reason "deleted"); the document is removed
  once no task runs. Output blobs are kept.
- Experiment: its sweeps (canceled, then removed), its jobs, then the document. Workspace: its
  experiments (with their sweeps and jobs), then its clusters and file servers, then the document.
- Cluster: jobs still queued, assigned or running on it (its sched partition's pending and
  assignment rows) are terminated with stop "cluster-deleted" (they end `failed`, error code
  ClusterDeleted, "The cluster '<name>' was deleted."; their documents stay so users can read why),
  then the cluster document is removed. Its nodes are removed by the cluster reconciler, which
  clears a sched partition that has no cluster document; until then the name cannot be reused.
- File server: locally its directory, then the document; on vmss the file server reconciler
  deletes its VM, then the document.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from shared.adapters import local_paths, operation_store, sched_store, storage
from shared.adapters.resource_store import StaleEtag
from shared.config import Settings
from shared.decisions.job_outcome import CLUSTER_DELETED
from shared.domain import resources, states
from shared.domain.errors import ApiError, not_found
from shared.domain.keys import ClusterRef, ExperimentRef, JobRef, WorkspaceRef
from shared.services import job_links
from shared.services.api_common import Accepted, check_if_match, store, utcnow
from shared.services.guarded import each

#: An in-flight index row with no operation this long after it was written is a create that failed.
ORPHAN_INDEX_AFTER = timedelta(minutes=5)


def job_control() -> ModuleType:
    """The scheduler's job control (imported when needed: it owns job phases after creation)."""
    from shared.services import job_control as module

    return module


def _sweeps() -> ModuleType:
    """The sweeps service (imported when needed: it creates jobs through `jobs`, which deletes through here)."""
    from shared.services import sweeps as module

    return module


def _mark_deleting(settings: Settings, table: str, pk: str, rk: str) -> bool:
    """Record deletion intent on a document; False when it no longer exists."""
    at = resources.iso(utcnow())

    def apply(data: dict[str, Any]) -> None:
        data.setdefault("internal", {}).setdefault("deletingSince", at)

    return store(settings, table).update(pk, rk, apply) is not None


def job_terminal(settings: Settings, ref: JobRef) -> bool:
    doc = store(settings, storage.T_JOBS).get(ref.experiment.job_pk, ref.name.lower())
    return doc is None or (doc.data.get("internal") or {}).get("phase") in states.JOB_TERMINAL


def remove_job(settings: Settings, ref: JobRef) -> bool:
    if not _mark_deleting(settings, storage.T_JOBS, ref.experiment.job_pk, ref.name.lower()):
        return True
    if not job_control().stop_for_delete(settings, ref):
        return False
    store(settings, storage.T_JOBS).delete(ref.experiment.job_pk, ref.name.lower())
    job_links.job_removed(settings, ref, utcnow())  # a job waiting on it can no longer wait for it to succeed
    return True


def remove_experiment(settings: Settings, ref: ExperimentRef) -> bool:
    pk, rk = ref.workspace.child_pk, ref.name.lower()
    if not _mark_deleting(settings, storage.T_EXPERIMENTS, pk, rk):
        return True
    done = True
    for doc in list(store(settings, storage.T_SWEEPS).scan(pk=ref.job_pk)):  # first: they create jobs
        done = _sweeps().remove(settings, _sweeps().SweepRef(ref, doc.data["name"])) and done
    for doc in list(store(settings, storage.T_JOBS).scan(pk=ref.job_pk)):
        done = remove_job(settings, ref.job(doc.data["name"])) and done
    if done:
        store(settings, storage.T_EXPERIMENTS).delete(pk, rk)
    return done


def cluster_deleted_reason(name: str) -> str:
    return f"The cluster '{name}' was deleted."


def remove_cluster(settings: Settings, ref: ClusterRef) -> bool:
    table = store(settings, storage.T_CLUSTERS)
    if table.get(ref.workspace.child_pk, ref.name.lower()) is None:
        return True
    terminate_cluster_jobs(settings, ref.key)
    table.delete(ref.workspace.child_pk, ref.name.lower())
    sched_store.kick(settings.storage_connection_string, ref.key)
    return True


def terminate_cluster_jobs(settings: Settings, cluster_key: str) -> list[str]:
    """Stop every job the cluster's sched partition still holds (pending or assigned): live work
    only, never the cluster's whole history. The job keys it stopped."""
    name = ClusterRef.from_key(cluster_key).name
    held = sorted({row["jobKey"] for row in sched_store.partition(settings.storage_connection_string, cluster_key)
                   if row["RowKey"].startswith((sched_store.PENDING, sched_store.ASSIGNMENT)) and row.get("jobKey")})
    each(held, lambda key: job_control().terminate_job(settings, JobRef.from_key(key), cluster_deleted_reason(name),
                                                       stop=CLUSTER_DELETED), "stopping the jobs of a deleted cluster")
    return held


def remove_fileserver(settings: Settings, ws: WorkspaceRef, name: str) -> bool:
    """Whether the file server is gone. One with a VM (provisioningState `deleting`, set for its
    reconciler) goes once the file server reconciler has deleted the VM; a local one goes here."""
    table = store(settings, storage.T_FILESERVERS)
    doc = table.get(ws.child_pk, name.lower())
    if doc is None:
        return True
    if (doc.data.get("properties") or {}).get("provisioningState") == "deleting":
        return False
    if settings.provider == "vmss":
        _mark_vm_deleting(settings, ws, name)
        return False
    shutil.rmtree(local_paths.fileserver_dir(settings.state_dir, doc.data["id"]), ignore_errors=True)
    table.delete(ws.child_pk, name.lower())
    return True


def _mark_vm_deleting(settings: Settings, ws: WorkspaceRef, name: str) -> None:
    from shared.services.fileserver_reconcile import mark_deleting

    mark_deleting(settings, ws.child_pk, name.lower(), utcnow())


def remove_workspace(settings: Settings, ref: WorkspaceRef) -> bool:
    if not _mark_deleting(settings, storage.T_WORKSPACES, ref.pk, ref.workspace.lower()):
        return True
    done = True
    for doc in list(store(settings, storage.T_EXPERIMENTS).scan(pk=ref.child_pk)):
        done = remove_experiment(settings, ref.experiment(doc.data["name"])) and done
    if not done:
        return False
    for doc in list(store(settings, storage.T_CLUSTERS).scan(pk=ref.child_pk)):
        remove_cluster(settings, ref.cluster(doc.data["name"]))
    for doc in list(store(settings, storage.T_FILESERVERS).scan(pk=ref.child_pk)):
        remove_fileserver(settings, ref, doc.data["name"])
    store(settings, storage.T_WORKSPACES).delete(ref.pk, ref.workspace.lower())
    return True


def _workspace(key: str) -> WorkspaceRef:
    sub, rg, ws = key.split("|")
    return WorkspaceRef(sub, rg, ws)


def _run(settings: Settings, kind: str, target: dict[str, str]) -> bool:
    if kind == "delete-job":
        return remove_job(settings, JobRef.from_key(target["job"]))
    if kind == "terminate-job":
        return job_terminal(settings, JobRef.from_key(target["job"]))
    if kind == "delete-experiment":
        return remove_experiment(settings, _workspace(target["workspace"]).experiment(target["experiment"]))
    if kind == "delete-workspace":
        return remove_workspace(settings, _workspace(target["workspace"]))
    if kind == "delete-cluster":
        return remove_cluster(settings, _workspace(target["workspace"]).cluster(target["cluster"]))
    if kind == "delete-fileserver":
        return remove_fileserver(settings, _workspace(target["workspace"]), target["fileServer"])
    raise ValueError(f"unknown operation kind {kind!r}")


def start_operation(settings: Settings, kind: str, target: dict[str, str], resource_id: str = "",
                    finished: bool = False) -> str:
    op_id = str(uuid.uuid4())
    operation_store.create(settings.storage_connection_string, op_id, kind, target, resources.iso(utcnow()),
                           resource_id, finished)
    return op_id


def resource_id(*names: str) -> str:
    """A resource as Batch AI's operation results named it: its path names joined by '$'."""
    return "$".join(names)


def delete(settings: Settings, kind: str, target: dict[str, str], resource: str) -> Accepted:
    """Record the deletion (the resource was marked by the caller) and answer with its operation, as the
    real service did (202 and an operation to poll). The reconcile timer does the work and finishes it;
    a finished operation never re-runs, so a resource created again under the name is not touched."""
    return Accepted(start_operation(settings, kind, target, resource))


def poll(settings: Settings, op_id: str) -> operation_store.Operation:
    """The operation as recorded (Succeeded, Failed with an error, or InProgress): a pure read."""
    op = operation_store.get(settings.storage_connection_string, op_id)
    if op is None:
        raise not_found("operation", op_id)
    return op


@dataclass
class DeletionTick:
    finished: list[str] = field(default_factory=list)  # operation ids finished this tick
    waiting: list[str] = field(default_factory=list)  # still in progress (tasks stopping, VMs deleting)


def reconcile_all(settings: Settings, now: datetime) -> DeletionTick:
    """Advance every operation in flight; a failing one does not stop the others (raised together after)."""
    result = DeletionTick()
    conn = settings.storage_connection_string

    def step(item: tuple[str, str]) -> None:
        op_id, created_at = item
        op = operation_store.get(conn, op_id)
        if op is None:
            if _older_than(created_at, now, ORPHAN_INDEX_AFTER):
                operation_store.forget(conn, op_id)  # its create failed half-way: no operation to advance
            return
        if op.status != "InProgress":
            operation_store.forget(conn, op_id)  # finished by an earlier tick that stopped before this
            return
        if advance(settings, op, now):
            result.finished.append(op_id)
        else:
            result.waiting.append(op_id)

    each(operation_store.in_flight(conn), step, "advancing the operation")
    return result


def advance(settings: Settings, op: operation_store.Operation, now: datetime) -> bool:
    """One idempotent step of an operation in progress; True when it finished (Succeeded, or Failed
    with the ARM error a permanent refusal gave)."""
    conn = settings.storage_connection_string
    try:
        finished, error = _run(settings, op.kind, op.target), None
    except ApiError as e:
        finished, error = True, e.body()["error"]
    if not finished:
        return False
    with contextlib.suppress(StaleEtag):  # a concurrent tick finished it first, with the same outcome
        operation_store.finish(conn, op, "Failed" if error else "Succeeded", resources.iso(now), error)
    operation_store.forget(conn, op.op_id)
    return True


def _older_than(at: str, now: datetime, age: timedelta) -> bool:
    try:
        created = datetime.fromisoformat(at)
    except ValueError:
        return True
    return now - (created if created.tzinfo else created.replace(tzinfo=UTC)) > age


def _precheck(settings: Settings, table: str, pk: str, rk: str, if_match: str | None) -> bool:
    """Whether the resource exists (412 when If-Match does not match it)."""
    doc = store(settings, table).get(pk, rk)
    check_if_match(doc, if_match)
    return doc is not None


def _intent(settings: Settings, table: str, pk: str, rk: str, if_match: str | None) -> bool:
    """Mark the resource deleting; False when there is nothing to delete."""
    return _precheck(settings, table, pk, rk, if_match) and _mark_deleting(settings, table, pk, rk)


def delete_workspace(settings: Settings, ref: WorkspaceRef, if_match: str | None = None) -> Accepted:
    if not _intent(settings, storage.T_WORKSPACES, ref.pk, ref.workspace.lower(), if_match):
        return Accepted(None, existed=False)
    return delete(settings, "delete-workspace", {"workspace": ref.child_pk},
                  resource_id(ref.subscription, ref.resource_group, ref.workspace))


def delete_experiment(settings: Settings, ref: ExperimentRef, if_match: str | None = None) -> Accepted:
    if not _intent(settings, storage.T_EXPERIMENTS, ref.workspace.child_pk, ref.name.lower(), if_match):
        return Accepted(None, existed=False)
    ws = ref.workspace
    return delete(settings, "delete-experiment", {"workspace": ws.child_pk, "experiment": ref.name},
                  resource_id(ws.subscription, ws.resource_group, ws.workspace, ref.name))


def delete_job(settings: Settings, ref: JobRef, if_match: str | None = None) -> Accepted:
    if not _intent(settings, storage.T_JOBS, ref.experiment.job_pk, ref.name.lower(), if_match):
        return Accepted(None, existed=False)
    ws = ref.experiment.workspace
    return delete(settings, "delete-job", {"job": ref.key},
                  resource_id(ws.subscription, ws.resource_group, ws.workspace, ref.experiment.name, ref.name))


def delete_cluster(settings: Settings, ref: ClusterRef, if_match: str | None = None) -> Accepted:
    if not _intent(settings, storage.T_CLUSTERS, ref.workspace.child_pk, ref.name.lower(), if_match):
        return Accepted(None, existed=False)
    ws = ref.workspace
    return delete(settings, "delete-cluster", {"workspace": ws.child_pk, "cluster": ref.name},
                  resource_id(ws.subscription, ws.resource_group, ws.workspace, ref.name))


def delete_fileserver(settings: Settings, ws: WorkspaceRef, name: str, if_match: str | None = None) -> Accepted:
    if not _intent(settings, storage.T_FILESERVERS, ws.child_pk, name.lower(), if_match):
        return Accepted(None, existed=False)
    if settings.provider == "vmss":
        _mark_vm_deleting(settings, ws, name)  # what its reconciler acts on
    return delete(settings, "delete-fileserver", {"workspace": ws.child_pk, "fileServer": name},
                  resource_id(ws.subscription, ws.resource_group, ws.workspace, name))
