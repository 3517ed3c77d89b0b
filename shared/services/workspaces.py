"""Workspaces: create, update (tags), get, list; deletion is `removal`'s. The only writer of workspace documents.

A PUT of an existing workspace with the same location updates its tags (ARM tags are mutable);
another location is a 409.
"""

from __future__ import annotations

from shared.adapters import storage
from shared.adapters.resource_store import Doc, StaleEtag
from shared.config import Settings
from shared.domain import resources, validation
from shared.domain.errors import not_found, precondition_failed
from shared.domain.keys import WorkspaceRef
from shared.services.api_common import Page, Rendered, create_or_match, page_of, store, table_token, utcnow


def _render(doc: Doc) -> Rendered:
    return Rendered(resources.render_workspace(doc.data), doc.etag)


def create(settings: Settings, ref: WorkspaceRef, body: object, if_match: str | None = None) -> Rendered:
    location, tags = validation.workspace_create(body)
    table = store(settings, storage.T_WORKSPACES)
    doc, created = create_or_match(
        table, ref.pk, ref.workspace.lower(),
        lambda: resources.new_workspace(ref, location, tags, utcnow()),
        lambda stored: stored["location"].lower() == location.lower(), "workspace", ref.workspace, if_match)
    if not created and doc.data.get("tags") != tags:
        return update(settings, ref, {"tags": tags}, if_match)
    return _render(doc)


def update(settings: Settings, ref: WorkspaceRef, body: object, if_match: str | None = None) -> Rendered:
    tags = validation.workspace_update(body)

    def apply(data: dict) -> None:
        if tags is not None:
            data["tags"] = tags

    try:
        doc = store(settings, storage.T_WORKSPACES).update(ref.pk, ref.workspace.lower(), apply, if_match)
    except StaleEtag as e:
        raise precondition_failed("The workspace's ETag does not match the If-Match header.") from e
    if doc is None:
        raise not_found("workspace", ref.workspace)
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
