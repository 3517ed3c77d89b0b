"""Clusters: create, update (scaleSettings), get, list, remote login; deletion is `removal`'s.

The API writes the cluster document's request properties; `internal.allocationState` and its
transition time belong to the cluster reconciler, node rows of the sched partition to the node
services. After every create or scale change a kick asks for a scheduling pass, and the
reconciler's timer picks the new target up. A cluster whose old node rows are still in its sched
partition (deleted, not yet cleaned up by the reconciler) cannot be created again yet (409).
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.adapters import sched_store, secret_box, storage
from shared.adapters.resource_store import Doc, StaleEtag, encode_token
from shared.config import Settings
from shared.domain import resources, states, validation
from shared.domain.errors import conflict, not_found, precondition_failed
from shared.domain.keys import ClusterRef, WorkspaceRef
from shared.services import usages
from shared.services.api_common import (
    Page,
    Rendered,
    create_or_match,
    live_workspace,
    store,
    table_token,
    utcnow,
)


def node_rows(settings: Settings, ref: ClusterRef) -> list[dict[str, Any]]:
    return resources.node_rows_only(sched_store.partition(settings.storage_connection_string, ref.key))


def _render(settings: Settings, ref: ClusterRef, doc: Doc) -> Rendered:
    return Rendered(resources.render_cluster(doc.data, node_rows(settings, ref)), doc.etag)


def get_doc(settings: Settings, ref: ClusterRef) -> Doc | None:
    return store(settings, storage.T_CLUSTERS).get(ref.workspace.child_pk, ref.name.lower())


def create(settings: Settings, ref: ClusterRef, body: object, if_match: str | None = None) -> Rendered:
    props = validation.cluster_create(body, settings.key_vault_hosts)
    live_workspace(settings, ref.workspace)
    table = store(settings, storage.T_CLUSTERS)
    existing = table.get(ref.workspace.child_pk, ref.name.lower())
    if existing is None and node_rows(settings, ref):
        raise conflict(f"The cluster '{ref.name}' was deleted and its nodes are still being removed; retry later.",
                       code="ClusterBeingDeleted")
    if existing is None:
        usages.check_quota(settings, ref, props, new=True)
    sealed = secret_box.seal_secrets(settings, props)
    doc, created = create_or_match(
        table, ref.workspace.child_pk, ref.name.lower(),
        lambda: resources.new_cluster(ref, sealed, utcnow(), str(uuid.uuid4())),
        lambda stored: resources.same_spec("cluster", secret_box.open_all(settings, stored["properties"]), props),
        "cluster", ref.name, if_match)
    if created:
        sched_store.kick(settings.storage_connection_string, ref.key)
    return _render(settings, ref, doc)


def update(settings: Settings, ref: ClusterRef, body: object, if_match: str | None = None) -> Rendered:
    scale = validation.cluster_update(body)

    def apply(data: dict[str, Any]) -> None:
        if scale is not None:
            usages.check_quota(settings, ref, {**data["properties"], "scaleSettings": scale}, new=False)
            data["properties"]["scaleSettings"] = scale

    try:
        doc = store(settings, storage.T_CLUSTERS).update(ref.workspace.child_pk, ref.name.lower(), apply, if_match)
    except StaleEtag as e:
        raise precondition_failed("The cluster's ETag does not match the If-Match header.") from e
    if doc is None:
        raise not_found("cluster", ref.name)
    if scale is not None:
        sched_store.kick(settings.storage_connection_string, ref.key)
    return _render(settings, ref, doc)


def get(settings: Settings, ref: ClusterRef) -> Rendered:
    doc = get_doc(settings, ref)
    if doc is None:
        raise not_found("cluster", ref.name)
    return _render(settings, ref, doc)


def list_by_workspace(settings: Settings, ws: WorkspaceRef, size: int, token: str | None) -> Page:
    docs, nxt = store(settings, storage.T_CLUSTERS).page(ws.child_pk, size, table_token(token))
    items = [_render(settings, ws.cluster(d.data["name"]), d).body for d in docs]
    return Page(items, encode_token(nxt))


def remote_login(settings: Settings, ref: ClusterRef) -> Page:
    if get_doc(settings, ref) is None:
        raise not_found("cluster", ref.name)
    return Page(login_entries(node_rows(settings, ref)), None)


def login_entries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RemoteLoginInformation of node rows that are not lost, in node id order: where the node's sshd is
    reached: the load balancer's public address and NAT port the provider recorded (scale sets with
    node_ssh_nat, as Batch AI reported them), else the node's own address and sshd port (machines report
    theirs when they register); a node without sshd (a local process) is listed by its id alone."""
    out = []
    for row in sorted(rows, key=lambda r: r["RowKey"]):
        if row.get("state") == states.NodeState.LOST:
            continue
        entry: dict[str, Any] = {"nodeId": row["RowKey"][len(sched_store.NODE):]}
        if row.get("loginPort") and row.get("loginAddress"):
            entry.update(ipAddress=row["loginAddress"], port=int(row["loginPort"]))
        elif row.get("sshPort") and row.get("address"):
            entry.update(ipAddress=row["address"], port=int(row["sshPort"]))
        out.append(entry)
    return out
