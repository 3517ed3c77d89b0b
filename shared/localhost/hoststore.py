"""The local trigger host's own bookkeeping in storage, where the Functions host keeps it: the
`azure-webjobs-hosts` container (blob receipts, timer monitor status) and the blob trigger's poison
queue `webjobs-blobtrigger-poison`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.localhost.bindings import send_text

HOSTS_CONTAINER = "azure-webjobs-hosts"
BLOB_POISON_QUEUE = "webjobs-blobtrigger-poison"


@lru_cache(maxsize=16)
def _hosts_container(conn: str) -> ContainerClient:
    client = BlobServiceClient.from_connection_string(conn).get_container_client(HOSTS_CONTAINER)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    return client


@dataclass(frozen=True)
class Receipt:
    complete: bool
    failures: int


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


class HostStore:
    def __init__(self, conn: str, host_id: str) -> None:
        self.conn = conn
        self.host_id = host_id

    def _blob(self, name: str) -> Any:
        return _hosts_container(self.conn).get_blob_client(name)

    # Blob receipts: one per function, blob and blob version (ETag).
    def _receipt_name(self, function_id: str, container: str, blob: str, etag: str) -> str:
        version = etag.strip('"')
        return f"blobreceipts/{self.host_id}/{function_id}/{version}/{container}/{blob}"

    def receipt(self, function_id: str, container: str, blob: str, etag: str) -> Receipt | None:
        try:
            props = self._blob(self._receipt_name(function_id, container, blob, etag)).get_blob_properties()
        except ResourceNotFoundError:
            return None
        meta = props.metadata or {}
        return Receipt(complete=meta.get("complete") == "true", failures=int(meta.get("failures", "0")))

    def write_receipt(self, function_id: str, container: str, blob: str, etag: str, receipt: Receipt) -> None:
        self._blob(self._receipt_name(function_id, container, blob, etag)).upload_blob(
            b"", overwrite=True,
            metadata={"complete": "true" if receipt.complete else "false", "failures": str(receipt.failures)})

    def poison_blob(self, function_id: str, container: str, blob: str, etag: str, encoding: str) -> None:
        message = {"Type": "BlobTrigger", "FunctionId": function_id, "BlobType": "BlockBlob",
                   "ContainerName": container, "BlobName": blob, "ETag": etag}
        send_text(self.conn, BLOB_POISON_QUEUE, json.dumps(message), encoding)

    # Timer monitor status: Last, Next, LastUpdated.
    def _status_name(self, function_id: str) -> str:
        return f"timers/{self.host_id}/{function_id}/status"

    def timer_status(self, function_id: str) -> dict[str, dt.datetime] | None:
        try:
            data = json.loads(self._blob(self._status_name(function_id)).download_blob().readall())
        except ResourceNotFoundError:
            return None
        return {k: dt.datetime.fromisoformat(v) for k, v in data.items() if v}

    def write_timer_status(self, function_id: str, last: dt.datetime, next_: dt.datetime, now: dt.datetime) -> None:
        body = json.dumps({"Last": _iso(last), "Next": _iso(next_), "LastUpdated": _iso(now)})
        self._blob(self._status_name(function_id)).upload_blob(body.encode(), overwrite=True)
