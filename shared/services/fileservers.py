"""File servers: create, get, list; deletion is `removal`'s. The only writer of file server documents.

Locally a file server is a directory, `local_paths.fileserver_dir(state_dir, id)`
(``<state dir>/fileservers/<sub>/<rg>/<ws>/<name>``), created here and shared by the local nodes
that mount it; it is stored as provisioned (`succeeded`) at once, with mountSettings as an NFS
server VM would report them: mountPoint ``/mnt/data`` (the export on the server) and loopback
addresses. With provider vmss the document is stored `creating` with no mountSettings, and
`fileserver_reconcile` provisions its VM on the reconciler's timer and records the outcome.
"""

from __future__ import annotations

from typing import Any

from shared.adapters import local_paths, secret_box, storage
from shared.config import Settings
from shared.domain import resources, validation
from shared.domain.errors import not_found
from shared.domain.keys import WorkspaceRef
from shared.services.api_common import (
    Page,
    Rendered,
    create_or_match,
    live_workspace,
    page_of,
    store,
    table_token,
    utcnow,
)

LOCAL_MOUNT = {"mountPoint": "/mnt/data", "fileServerPublicIP": "127.0.0.1", "fileServerInternalIP": "127.0.0.1"}


def create(settings: Settings, ws: WorkspaceRef, name: str, body: object, if_match: str | None = None) -> Rendered:
    props = validation.fileserver_create(body)
    live_workspace(settings, ws)
    on_azure = settings.provider == "vmss"
    sealed = secret_box.seal_secrets(settings, props)
    doc, _ = create_or_match(
        store(settings, storage.T_FILESERVERS), ws.child_pk, name.lower(),
        lambda: _new(ws, name, sealed, on_azure),
        lambda stored: resources.same_spec("fileserver", secret_box.open_all(settings, stored["properties"]), props),
        "file server", name, if_match)
    if on_azure:
        return Rendered(resources.render_fileserver(doc.data), doc.etag)
    local_paths.fileserver_dir(settings.state_dir, doc.data["id"]).mkdir(parents=True, exist_ok=True)
    return Rendered(resources.render_fileserver(doc.data), doc.etag)


def _new(ws: WorkspaceRef, name: str, props: dict[str, Any], on_azure: bool) -> dict[str, Any]:
    if not on_azure:
        return resources.new_fileserver(ws, name, props, utcnow(), dict(LOCAL_MOUNT))
    data = resources.new_fileserver(ws, name, props, utcnow(), {})
    data["properties"]["provisioningState"] = "creating"
    return data


def get(settings: Settings, ws: WorkspaceRef, name: str) -> Rendered:
    doc = store(settings, storage.T_FILESERVERS).get(ws.child_pk, name.lower())
    if doc is None:
        raise not_found("file server", name)
    return Rendered(resources.render_fileserver(doc.data), doc.etag)


def list_by_workspace(settings: Settings, ws: WorkspaceRef, size: int, token: str | None) -> Page:
    docs, nxt = store(settings, storage.T_FILESERVERS).page(ws.child_pk, size, table_token(token))
    return page_of(docs, nxt, lambda d: resources.render_fileserver(d.data))
