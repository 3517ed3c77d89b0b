"""Job output files in blob storage: one directory level at a time, with read-only SAS links.

Directories are blob name prefixes ending in '/'. Download links are blob SAS URLs with read
permission that expire after the caller's minutes; they work with a plain HTTP GET.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.storage.blob import BlobPrefix, BlobSasPermissions, generate_blob_sas

from shared.adapters import storage


@dataclass
class Entry:
    name: str  # full blob name, or the prefix without its trailing '/' for a directory
    is_dir: bool
    size: int | None = None
    last_modified: datetime | None = None


def list_level(conn: str, container: str, prefix: str, size: int, token: str | None) -> tuple[list[Entry], str | None]:
    """One page of the files and subdirectories directly under `prefix` (which ends with '/')."""
    client = storage.container(conn, container)
    pages = client.walk_blobs(name_starts_with=prefix, delimiter="/", results_per_page=size).by_page(
        continuation_token=token)
    entries: list[Entry] = []
    for item in next(pages, []):
        if isinstance(item, BlobPrefix):
            entries.append(Entry(item.name.rstrip("/"), True))
        else:
            entries.append(Entry(item.name, False, item.size, item.last_modified))
    return entries, pages.continuation_token or None


def read_url(conn: str, container: str, blob: str, expires_at: datetime) -> str:
    """A URL that reads the blob until `expires_at`."""
    service = storage.blob_service(conn)
    credential: Any = service.credential
    sas = generate_blob_sas(account_name=credential.account_name, container_name=container, blob_name=blob,
                            account_key=credential.account_key, permission=BlobSasPermissions(read=True),
                            expiry=expires_at)
    return f"{service.get_blob_client(container, blob).url}?{sas}"
