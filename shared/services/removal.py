"""Deletion of every resource with its children, and the long-running operations that track it.

Cascade: a workspace takes its experiments (with their jobs), then its clusters and file servers;
an experiment takes its jobs. Each step is idempotent and re-run on every poll of the operation,
so a crash, a retried DELETE or a child created during the deletion is handled on the next poll.
A resource being deleted renders provisioningState `deleting` (internal.deletingSince) and refuses
new children (409).

- Job: `job_control.stop_for_delete` stops its tasks (reason "deleted"); the document is removed
  once no task runs. Queued jobs go at once; running ones make the DELETE asynchronous (202 and an
  operation that reports InProgress until their tasks have stopped). Output blobs are kept.
- Cluster: jobs still queued, assigned or running on it are terminated through
  `job_control.terminate_job` with reason "The cluster '<name>' was deleted." (they end `failed`
  with error code JobTerminated and that message; their documents stay so users can read why),
  then the cluster document is removed. Its nodes are removed by the cluster reconciler, which
  clears a sched partition that has no cluster document; until then the name cannot be reused.
- File server: the document and its local directory are removed (on vmss: marked `deleting`; the
  reconciler deletes its VM, then the document).

Every delete of an existing resource answers with an operation (202), as the real service did; a
missing one answers 204. Operations (table `operations`) record the intent; `poll` re-evaluates and
completes them.
"""

from __future__ import annotations

import shutil
import uuid
from types import ModuleType
from typing import Any

from azure.core.exceptions import HttpResponseError

from shared.adapters import local_paths, operation_store, sched_store, storage
from shared.config import Settings
from shared.domain import resources, states
from shared.domain.errors import ApiError, not_found
from shared.domain.keys import ClusterRef, ExperimentRef, JobRef, WorkspaceRef
from shared.services.api_common import Accepted, check_if_match, store, utcnow


def job_control() -> ModuleType:
    """The scheduler's job control (imported when needed: it owns job phases after creation)."""
    from shared.services import job_control as module

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
    return True


def remove_experiment(settings: Settings, ref: ExperimentRef) -> bool:
    pk, rk = ref.workspace.child_pk, ref.name.lower()
    if not _mark_deleting(settings, storage.T_EXPERIMENTS, pk, rk):
        return True
    done = True
    for doc in list(store(settings, storage.T_JOBS).scan(pk=ref.job_pk)):
        done = remove_job(settings, ref.job(doc.data["name"])) and done
    if done:
        store(settings, storage.T_EXPERIMENTS).delete(pk, rk)
    return done


def remove_cluster(settings: Settings, ref: ClusterRef) -> bool:
    table = store(settings, storage.T_CLUSTERS)
    if table.get(ref.workspace.child_pk, ref.name.lower()) is None:
        return True
    reason = f"The cluster '{ref.name}' was deleted."
    for doc in list(store(settings, storage.T_JOBS).scan(pk_prefix=ref.workspace.child_pk + "|")):
        internal = doc.data.get("internal") or {}
        if internal.get("clusterKey") == ref.key and internal.get("phase") not in states.JOB_TERMINAL:
            job_control().terminate_job(settings, JobRef.from_key(f"{doc.pk}|{doc.rk}"), reason)
    table.delete(ref.workspace.child_pk, ref.name.lower())
    sched_store.kick(settings.storage_connection_string, ref.key)
    return True


def remove_fileserver(settings: Settings, ws: WorkspaceRef, name: str) -> bool:
    """Whether the file server is gone; on vmss it goes once the reconciler has deleted its VM."""
    table = store(settings, storage.T_FILESERVERS)
    doc = table.get(ws.child_pk, name.lower())
    if doc is not None and settings.provider == "vmss":
        from shared.services.fileserver_reconcile import mark_deleting

        mark_deleting(settings, ws.child_pk, name.lower(), utcnow())  # its VM goes on the next tick
        return False
    if doc is not None:
        shutil.rmtree(local_paths.fileserver_dir(settings.state_dir, doc.data["id"]), ignore_errors=True)
        table.delete(ws.child_pk, name.lower())
    return True


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
    """Run what the deletion can do now and answer with its operation, as the real service did (202 and an
    operation to poll). The operation is recorded finished when nothing is left to wait for; else polls
    finish it. A finished one never re-runs: a resource created again under the name is not touched."""
    done = _run(settings, kind, target)
    return Accepted(start_operation(settings, kind, target, resource, finished=done))


def poll(settings: Settings, op_id: str) -> operation_store.Operation:
    """The operation after re-evaluating it (Succeeded, Failed with an error, or InProgress)."""
    conn = settings.storage_connection_string
    op = operation_store.get(conn, op_id)
    if op is None:
        raise not_found("operation", op_id)
    if op.status != "InProgress":
        return op
    try:
        finished = _run(settings, op.kind, op.target)
        error = None
    except ApiError as e:
        finished, error = True, e.body()["error"]
    if finished:
        status = "Failed" if error else "Succeeded"
        try:
            operation_store.finish(conn, op, status, resources.iso(utcnow()), error)
        except HttpResponseError as e:
            if e.status_code != 412:
                raise
        return operation_store.get(conn, op_id) or op
    return op


def _precheck(settings: Settings, table: str, pk: str, rk: str, if_match: str | None) -> bool:
    """Whether the resource exists (412 when If-Match does not match it)."""
    doc = store(settings, table).get(pk, rk)
    check_if_match(doc, if_match)
    return doc is not None


def delete_workspace(settings: Settings, ref: WorkspaceRef, if_match: str | None = None) -> Accepted:
    if not _precheck(settings, storage.T_WORKSPACES, ref.pk, ref.workspace.lower(), if_match):
        return Accepted(None, existed=False)
    return delete(settings, "delete-workspace", {"workspace": ref.child_pk},
                  resource_id(ref.subscription, ref.resource_group, ref.workspace))


def delete_experiment(settings: Settings, ref: ExperimentRef, if_match: str | None = None) -> Accepted:
    if not _precheck(settings, storage.T_EXPERIMENTS, ref.workspace.child_pk, ref.name.lower(), if_match):
        return Accepted(None, existed=False)
    ws = ref.workspace
    return delete(settings, "delete-experiment", {"workspace": ws.child_pk, "experiment": ref.name},
                  resource_id(ws.subscription, ws.resource_group, ws.workspace, ref.name))


def delete_job(settings: Settings, ref: JobRef, if_match: str | None = None) -> Accepted:
    if not _precheck(settings, storage.T_JOBS, ref.experiment.job_pk, ref.name.lower(), if_match):
        return Accepted(None, existed=False)
    ws = ref.experiment.workspace
    return delete(settings, "delete-job", {"job": ref.key},
                  resource_id(ws.subscription, ws.resource_group, ws.workspace, ref.experiment.name, ref.name))


def delete_cluster(settings: Settings, ref: ClusterRef, if_match: str | None = None) -> Accepted:
    if not _precheck(settings, storage.T_CLUSTERS, ref.workspace.child_pk, ref.name.lower(), if_match):
        return Accepted(None, existed=False)
    ws = ref.workspace
    return delete(settings, "delete-cluster", {"workspace": ws.child_pk, "cluster": ref.name},
                  resource_id(ws.subscription, ws.resource_group, ws.workspace, ref.name))


def delete_fileserver(settings: Settings, ws: WorkspaceRef, name: str, if_match: str | None = None) -> Accepted:
    if not _precheck(settings, storage.T_FILESERVERS, ws.child_pk, name.lower(), if_match):
        return Accepted(None, existed=False)
    return delete(settings, "delete-fileserver", {"workspace": ws.child_pk, "fileServer": name},
                  resource_id(ws.subscription, ws.resource_group, ws.workspace, name))
