"""Shared access signatures for nodes: URLs of one queue or one blob of the service's storage account,
signed with the account's key (from the connection string) and valid until a given time.

The URLs use the account's endpoints as the connection string names them; permissions are the
letters of the SAS `sp` field (queues: r read, a add, u update, p process; blobs: r read, a add,
c create, w write, d delete).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from azure.storage.queue import QueueSasPermissions, generate_queue_sas

from shared.adapters import storage


def queue_url(conn: str, queue: str, permission: str, expires_at: datetime) -> str:
    service = storage.queue_service(conn)
    credential: Any = service.credential
    sas = generate_queue_sas(credential.account_name, queue, credential.account_key,
                             permission=QueueSasPermissions.from_string(permission), expiry=expires_at)
    return f"{service.get_queue_client(queue).url}?{sas}"


def blob_url(conn: str, container: str, blob: str, permission: str, expires_at: datetime) -> str:
    service = storage.blob_service(conn)
    credential: Any = service.credential
    sas = generate_blob_sas(credential.account_name, container, blob, account_key=credential.account_key,
                            permission=BlobSasPermissions.from_string(permission), expiry=expires_at)
    return f"{service.get_blob_client(container, blob).url}?{sas}"
