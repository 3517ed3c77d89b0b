"""Blob storage of batch-scoring runs: listing inputs, the per-job work containers (items file in,
results and outputs back), server-side copies of outputs to the run's output container, and the
summary blob. Every write is idempotent (overwrite or create-if-absent)."""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings

from shared.adapters import output_blobs, storage

COPY_THREADS = 8


def account(conn: str) -> tuple[str, str | None]:
    """The account name and key of a connection string (key None for identity-based connections)."""
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return parts.get("AccountName", ""), parts.get("AccountKey")


def list_inputs(conn: str, container: str, prefix: str, limit: int) -> list[str] | None:
    """Blob names under the prefix, in name order, at most `limit` + 1 (None: no such container)."""
    names: list[str] = []
    try:
        for name in storage.container(conn, container).list_blob_names(name_starts_with=prefix or None):
            names.append(name)  # names only: a third of the time of listing properties
            if len(names) > limit:
                break
    except ResourceNotFoundError:
        return None
    return names


def read_url(conn: str, container: str, blob: str, expires_at: datetime) -> str:
    return output_blobs.read_url(conn, container, blob, expires_at)


def _json_blob(conn: str, container: str, name: str, data: Any) -> None:
    storage.container(conn, container).upload_blob(
        name, json.dumps(data, separators=(",", ":")).encode(), overwrite=True,
        content_settings=ContentSettings(content_type="application/json"))


def ensure_container(conn: str, name: str) -> None:
    with contextlib.suppress(ResourceExistsError):
        storage.blob_service(conn).create_container(name)


def write_items(conn: str, container: str, items_doc: dict[str, Any], file_name: str) -> None:
    """A job's work container with its items file (created again identically on a retry)."""
    ensure_container(conn, container)
    _json_blob(conn, container, file_name, items_doc)


def read_blob(conn: str, container: str, name: str) -> bytes | None:
    try:
        return storage.container(conn, container).download_blob(name).readall()
    except ResourceNotFoundError:
        return None


def list_names(conn: str, container: str, prefix: str) -> list[str]:
    try:
        return list(storage.container(conn, container).list_blob_names(name_starts_with=prefix))
    except ResourceNotFoundError:
        return []


def copy_blobs(conn: str, source_container: str, pairs: list[tuple[str, str]], dest_container: str,
               expires_at: datetime) -> None:
    """Server-side copies (synchronous: small blobs) of (source name, destination name) pairs."""
    if not pairs:
        return
    ensure_container(conn, dest_container)
    dest = storage.container(conn, dest_container)

    def copy(pair: tuple[str, str]) -> None:
        source, target = pair
        url = output_blobs.read_url(conn, source_container, source, expires_at)
        dest.get_blob_client(target).start_copy_from_url(url, requires_sync=True)

    with ThreadPoolExecutor(max_workers=min(COPY_THREADS, len(pairs))) as pool:
        list(pool.map(copy, pairs))


def write_json(conn: str, container: str, name: str, data: Any) -> None:
    ensure_container(conn, container)
    _json_blob(conn, container, name, data)


def delete_container(conn: str, name: str) -> None:
    with contextlib.suppress(ResourceNotFoundError):
        storage.blob_service(conn).delete_container(name)
