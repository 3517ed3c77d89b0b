"""Workspaces: create, update (tags, data containers), get, list; deletion is `removal`'s. The only
writer of workspace documents.

A PUT of an existing workspace with the same location updates its tags (ARM tags are mutable) and,
when the body names them, its data containers (`data_containers`); another location is a 409.
"""

from __future__ import annotations

from typing import Any

from shared.adapters import storage
from shared.adapters.resource_store import Doc, StaleEtag
from shared.config import Settings
from shared.domain import resources, validation
from shared.domain.errors import not_found, precondition_failed
from shared.domain.keys import WorkspaceRef
from shared.services import data_containers
from shared.services.api_common import Page, Rendered, create_or_match, page_of, store, table_token, utcnow


def _render(doc: Doc) -> Rendered:
    return Rendered(resources.render_workspace(doc.data), doc.etag)


def _new(ref: WorkspaceRef, location: str, tags: dict[str, str], containers: list[str] | None) -> dict[str, Any]:
    data = resources.new_workspace(ref, location, tags, utcnow())
    if containers:
        data["properties"][data_containers.FIELD] = containers
    return data


def create(settings: Settings, ref: WorkspaceRef, body: object, if_match: str | None = None) -> Rendered:
    location, tags = validation.workspace_create(body)
    containers = data_containers.requested(body)
    if containers:
        data_containers.claim(settings, ref, containers)
    table = store(settings, storage.T_WORKSPACES)
    doc, created = create_or_match(
        table, ref.pk, ref.workspace.lower(), lambda: _new(ref, location, tags, containers),
        lambda stored: stored["location"].lower() == location.lower(), "workspace", ref.workspace, if_match)
    changes_containers = containers is not None and containers != data_containers.listed(doc.data)
    if not created and (doc.data.get("tags") != tags or changes_containers):
        change: dict[str, Any] = {"tags": tags}
        if containers is not None:
            change["properties"] = {data_containers.FIELD: containers}
        return update(settings, ref, change, if_match)
    return _render(doc)


def update(settings: Settings, ref: WorkspaceRef, body: object, if_match: str | None = None) -> Rendered:
    tags = validation.workspace_update(body)
    containers = data_containers.requested(body)
    if containers:
        data_containers.claim(settings, ref, containers)
    dropped: list[str] = []

    def apply(data: dict) -> None:
        if tags is not None:
            data["tags"] = tags
        if containers is not None:
            dropped[:] = [c for c in data_containers.listed(data) if c not in containers]
            data["properties"][data_containers.FIELD] = containers

    try:
        doc = store(settings, storage.T_WORKSPACES).update(ref.pk, ref.workspace.lower(), apply, if_match)
    except StaleEtag as e:
        raise precondition_failed("The workspace's ETag does not match the If-Match header.") from e
    if doc is None:
        raise not_found("workspace", ref.workspace)
    data_containers.release(settings, ref, dropped)
    return _render(doc)


def get(settings: Settings, ref: WorkspaceRef) -> Rendered:
    doc = store(settings, storage.T_WORKSPACES).get(ref.pk, ref.workspace.lower())
    if doc is None:
        raise not_found("workspace", ref.workspace)
    return _render(doc)


def list_by_subscription(settings: Settings, subscription: str, size: int, token: str | None) -> Page:
    docs, nxt = store(settings, storage.T_WORKSPACES).page_prefix(f"{subscription.lower()}|", size,
                                                                   table_token(token))
    return page_of(docs, nxt, lambda d: resources.render_workspace(d.data))


def list_by_resource_group(settings: Settings, subscription: str, resource_group: str, size: int,
                           token: str | None) -> Page:
    ref = WorkspaceRef(subscription, resource_group, "-")
    docs, nxt = store(settings, storage.T_WORKSPACES).page(ref.pk, size, table_token(token))
    return page_of(docs, nxt, lambda d: resources.render_workspace(d.data))
