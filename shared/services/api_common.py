"""What the API's resource services share: the clock, the stores, results, create-or-match, If-Match.

Create semantics (Batch AI resources are create-only): a PUT of an existing resource with the same
request is idempotent (the stored resource is returned), a different request is a 409. A lost
insert race re-reads and compares, so a retried PUT never creates twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.adapters import storage
from shared.adapters.resource_store import Doc, ResourceStore, StaleEtag, decode_token, encode_token
from shared.config import Settings
from shared.domain.errors import ApiError, bad_request, conflict, not_found, precondition_failed
from shared.domain.keys import WorkspaceRef


@dataclass
class Rendered:
    body: dict[str, Any]
    etag: str | None = None
    status: int = 200


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_token: str | None


@dataclass
class Accepted:
    """An operation that finished (`op_id` None) or goes on asynchronously under `op_id`;
    `existed` False when a delete found nothing to delete."""
    op_id: str | None
    existed: bool = True


def utcnow() -> datetime:
    return datetime.now(UTC)


def store(settings: Settings, table: str) -> ResourceStore:
    return ResourceStore(settings.storage_connection_string, table)


def table_token(text: str | None) -> dict[str, Any] | int | None:
    if not text:
        return None
    try:
        return decode_token(text)
    except ValueError as e:
        raise bad_request("The parameter '$skiptoken' is not a valid continuation token.", "$skiptoken",
                          code="InvalidParameter") from e


def page_of(docs: list[Doc], token: Any, render: Callable[[Doc], dict[str, Any]]) -> Page:
    return Page([render(d) for d in docs], encode_token(token))


def check_if_match(doc: Doc | None, if_match: str | None) -> None:
    if if_match is None:
        return
    if doc is None or (if_match != "*" and if_match != doc.etag):
        raise precondition_failed("The resource's ETag does not match the If-Match header.")


def create_or_match(table: ResourceStore, pk: str, rk: str, build: Callable[[], dict[str, Any]],
                    same: Callable[[dict[str, Any]], bool], kind: str, name: str,
                    if_match: str | None = None) -> tuple[Doc, bool]:
    """The stored document and whether this call created it; 409 when it exists with another spec."""
    for _ in range(3):
        doc = table.get(pk, rk)
        check_if_match(doc, if_match)
        if doc is not None:
            if not same(doc.data):
                raise conflict(f"The {kind} '{name}' already exists with different properties; a {kind} "
                               "cannot be changed by PUT (delete it first, or PATCH what may change).")
            return doc, False
        try:
            return table.insert(pk, rk, build()), True
        except StaleEtag:
            continue
    raise ApiError(409, "Conflict", f"The {kind} '{name}' is being changed concurrently; retry.")


def deleting(doc: Doc) -> bool:
    return bool((doc.data.get("internal") or {}).get("deletingSince"))


def live_workspace(settings: Settings, ws: WorkspaceRef) -> Doc:
    """The workspace document of a child's create: 404 when missing, 409 while it is being deleted."""
    doc = store(settings, storage.T_WORKSPACES).get(ws.pk, ws.workspace.lower())
    if doc is None:
        raise not_found("workspace", ws.workspace)
    if deleting(doc):
        raise conflict(f"The workspace '{ws.workspace}' is being deleted.", code="ParentResourceBeingDeleted")
    return doc
