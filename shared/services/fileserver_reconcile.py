"""File servers on Azure (provider vmss): a tick drives each file server document towards its VM.

Owns the file server document's `provisioningState` (and its transition time), `mountSettings`
and `internal.error` after creation: `creating` documents get `FileServerVms.provision_file_server`
once per tick until it succeeds (mountSettings stored, `succeeded`) or fails (`failed`, the error
recorded); `deleting` documents get `delete_file_server` until their resources are gone, then the
document is deleted. Each file server is guarded: one that fails never stalls the others (the
failures are raised after the tick). Every write is a read-modify-write with the document's ETag (`ResourceStore.
update`), so a doubled tick writes the same thing. Locally (provider local) file servers are
directories and this does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.adapters import storage
from shared.adapters.compute import file_servers_for
from shared.adapters.compute.capabilities import ComputeRejected
from shared.adapters.compute.fileserver_vm import FileServerOperation, FileServerSpec, FileServerVms
from shared.adapters.resource_store import Doc, ResourceStore
from shared.config import Settings
from shared.domain.resources import iso
from shared.services.guarded import each

CREATING, SUCCEEDED, FAILED, DELETING = "creating", "succeeded", "failed", "deleting"


@dataclass
class FileServerTick:
    states: dict[str, str] = field(default_factory=dict)  # file server id -> provisioningState after the tick
    deleted: list[str] = field(default_factory=list)


def reconcile_file_servers(settings: Settings, now: datetime, servers: FileServerVms | None = None) -> FileServerTick:
    result = FileServerTick()
    if settings.provider != "vmss":
        return result
    vms = servers if servers is not None else file_servers_for(settings)
    store = ResourceStore(settings.storage_connection_string, storage.T_FILESERVERS)
    each(list(store.scan()), lambda doc: _step(store, vms, doc, now, result), "file server")
    return result


def _step(store: ResourceStore, vms: FileServerVms, doc: Doc, now: datetime, result: FileServerTick) -> None:
    state = (doc.data.get("properties") or {}).get("provisioningState")
    if state == CREATING:
        result.states[doc.data["id"]] = _provision(store, vms, doc, now)
    elif state == DELETING:
        if _delete(store, vms, doc):
            result.deleted.append(doc.data["id"])
        else:
            result.states[doc.data["id"]] = DELETING


def spec_of(doc: Doc) -> FileServerSpec:
    return FileServerSpec.from_properties(doc.data["id"], doc.data.get("properties") or {})


def _provision(store: ResourceStore, vms: FileServerVms, doc: Doc, now: datetime) -> str:
    try:
        op = vms.provision_file_server(spec_of(doc))
    except ComputeRejected as err:
        op = FileServerOperation(FAILED, detail=str(err))
        code = err.code
    else:
        code = "FileServerProvisioningFailed"
    if op.state not in (SUCCEEDED, FAILED):
        return CREATING

    def finish(data: dict[str, Any]) -> None:
        props = data.setdefault("properties", {})
        if props.get("provisioningState") != CREATING:
            return  # deleted or finished meanwhile
        props["provisioningState"] = op.state
        props["provisioningStateTransitionTime"] = iso(now)
        if op.state == SUCCEEDED:
            props["mountSettings"] = dict(op.mount_settings)
        else:
            data.setdefault("internal", {})["error"] = {"code": code, "message": op.detail}

    written = store.update(doc.pk, doc.rk, finish)
    return (written.data.get("properties") or {}).get("provisioningState", op.state) if written else op.state


def _delete(store: ResourceStore, vms: FileServerVms, doc: Doc) -> bool:
    """One step of deleting the file server's resources; True once they and the document are gone."""
    if vms.delete_file_server(spec_of(doc)).state != "deleted":
        return False
    current = store.get(doc.pk, doc.rk)
    if current is not None and (current.data.get("properties") or {}).get("provisioningState") == DELETING:
        store.delete(doc.pk, doc.rk, etag=current.etag)
    return True


def mark_deleting(settings: Settings, pk: str, rk: str, now: datetime) -> Doc | None:
    """The API's delete on Azure: the document shows `deleting` until the tick removed its resources."""
    def deleting(data: dict[str, Any]) -> None:
        props = data.setdefault("properties", {})
        if props.get("provisioningState") != DELETING:
            props["provisioningState"] = DELETING
            props["provisioningStateTransitionTime"] = iso(now)

    return ResourceStore(settings.storage_connection_string, storage.T_FILESERVERS).update(pk, rk, deleting)
