"""`NodeStorage` on a machine that holds no account key: short-lived SAS from the node credentials API.

The agent proves it is a node of its cluster with its machine's IMDS token and gets (see
`shared.services.node_credentials`): read+process on its queue, add on its poison queue,
create+write on its heartbeat blob (``POST /nodeagent/credentials``, valid one hour),
and read/add/create/write on named blobs of the output prefix of an assignment it holds
(``POST /nodeagent/blobs``, asked in batches). Both are renewed at half-life: the SDK clients keep
their `AzureSasCredential`, whose SAS is replaced (`update`), so a long task's clients live on.
A renewal that fails for a transient reason leaves the current SAS in use until it expires. The
grant also names the public key node messages are signed with and the vaults the node may read.
Events go through the service (``POST /nodeagent/events``), which accepts only the node's own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import AzureSasCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobClient, ContainerClient
from azure.storage.queue import QueueClient, QueueMessage, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.adapters import storage
from shared.agent.node_api import NodeApi
from shared.agent.node_storage import OutputBlobs, keyed_container
from shared.agent.retry import NO_SDK_RETRY, is_transient

log = logging.getLogger(__name__)

BLOB_BATCH = 100  # names per /nodeagent/blobs request


def _split(url: str) -> tuple[str, str]:
    base, _, sas = url.partition("?")
    return base, sas


def _lifetime_s(expires_on: str) -> float:
    return max(0.0, (datetime.fromisoformat(expires_on) - datetime.now(UTC)).total_seconds())


@dataclass
class _Lease:
    """When SAS granted at once must be renewed, and when they stop working (monotonic seconds)."""
    renew_at: float
    expires_at: float

    @classmethod
    def of(cls, expires_on: str, now: float) -> _Lease:
        lifetime = _lifetime_s(expires_on)
        return cls(now + lifetime / 2, now + lifetime)


class _Grant:
    """The clients of one node's credentials; renewals update their SAS in place."""

    KEYS = ("nodeQueue", "poisonQueue", "heartbeat")

    def __init__(self, doc: Mapping[str, Any], transport: RequestsTransport) -> None:
        self.doc = doc
        self.credentials = {key: AzureSasCredential(_split(str(doc[key]))[1]) for key in self.KEYS}

        def queue(key: str) -> QueueClient:
            return QueueClient.from_queue_url(_split(str(doc[key]))[0], credential=self.credentials[key],
                                              transport=transport, message_encode_policy=TextBase64EncodePolicy(),
                                              message_decode_policy=TextBase64DecodePolicy())
        self.node_queue, self.poison_queue = queue("nodeQueue"), queue("poisonQueue")
        self.heartbeat = BlobClient.from_blob_url(_split(str(doc["heartbeat"]))[0],
                                                  credential=self.credentials["heartbeat"], transport=transport)

    def renew(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        for key, credential in self.credentials.items():
            credential.update(_split(str(doc[key]))[1])


class ScopedStorage:
    def __init__(self, api: NodeApi, endpoints: Mapping[str, str], clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.endpoints = endpoints
        self.clock = clock
        self.transport = RequestsTransport()  # one connection pool for every client of this node
        self._lock = threading.Lock()
        self._grant: _Grant | None = None
        self._lease = _Lease(0.0, 0.0)

    def _fresh(self) -> _Grant:
        with self._lock:
            now = self.clock()
            if self._grant is not None and now < self._lease.renew_at:
                return self._grant
            try:
                doc = self.api.credentials()
            except Exception as error:
                if self._grant is not None and now < self._lease.expires_at and is_transient(error):
                    log.warning("renewing the node credentials failed (%s); the current ones stay in use", error)
                    return self._grant
                raise
            if self._grant is None:
                self._grant = _Grant(doc, self.transport)
            else:
                self._grant.renew(doc)
            self._lease = _Lease.of(str(doc["expiresOn"]), now)
            return self._grant

    def ensure_queues(self) -> None:
        self._fresh()  # the service creates the node's queues when it grants access to them

    def message_key(self) -> str:
        """The public key the service signs node messages with (as of the latest grant)."""
        return str(self._fresh().doc.get("messageKey") or "")

    def key_vault_hosts(self) -> list[str]:
        """The vaults this node may send its Key Vault token to (as of the latest grant)."""
        return [str(h) for h in self._fresh().doc.get("keyVaultHosts") or []]

    def receive(self, max_messages: int, visibility_timeout: int) -> list[QueueMessage]:
        pages = self._fresh().node_queue.receive_messages(max_messages=max_messages,
                                                          visibility_timeout=visibility_timeout, **NO_SDK_RETRY)
        return list(pages)[:max_messages]

    def delete_message(self, message: QueueMessage) -> None:
        self._fresh().node_queue.delete_message(message, **NO_SDK_RETRY)

    def send_poison(self, text: str) -> None:
        self._fresh().poison_queue.send_message(text, **NO_SDK_RETRY)

    def send_event(self, text: str) -> None:
        self.api.event(json.loads(text))  # through the service, which checks it is this node's

    def heartbeat(self, metadata: Mapping[str, str]) -> None:
        self._fresh().heartbeat.upload_blob(b"", overwrite=True, metadata=dict(metadata), **NO_SDK_RETRY)

    def delete_queues(self) -> None:
        """A node may not delete queues: the service removes those of the nodes it removes."""

    def outputs(self, container: str, assignment_id: str | None) -> OutputBlobs:
        if container != storage.C_OUTPUTS:
            raise ValueError(f"a node is granted blobs of {storage.C_OUTPUTS} only, not of {container}")
        return ScopedBlobs(self, assignment_id)

    def mount_container(self, account_name: str, container_name: str,
                        credentials: Mapping[str, Any] | None) -> ContainerClient:
        return keyed_container(account_name, container_name, credentials,
                               self.endpoints["blob"].format(account=account_name))


@dataclass
class _BlobAccess:
    client: BlobClient
    credential: AzureSasCredential
    lease: _Lease


class ScopedBlobs:
    """`OutputBlobs` of one assignment (or of the node's setup output), each blob with its own SAS."""

    def __init__(self, owner: ScopedStorage, assignment_id: str | None) -> None:
        self.owner = owner
        self.assignment_id = assignment_id
        self._access: dict[str, _BlobAccess] = {}
        self._lock = threading.Lock()

    def prepare(self, names: Sequence[str]) -> None:
        with self._lock:
            now = self.owner.clock()
            due = [n for n in dict.fromkeys(names) if n not in self._access or now >= self._access[n].lease.renew_at]
            for start in range(0, len(due), BLOB_BATCH):
                self._grant(due[start:start + BLOB_BATCH], now)

    def _grant(self, names: list[str], now: float) -> None:
        try:
            doc = self.owner.api.blobs(self.assignment_id, names)
        except Exception as error:
            if is_transient(error) and all(n in self._access and now < self._access[n].lease.expires_at
                                           for n in names):
                log.warning("renewing blob access failed (%s); the current SAS stay in use", error)
                return
            raise
        lease = _Lease.of(str(doc["expiresOn"]), now)
        for name, url in doc["blobs"].items():
            base, sas = _split(str(url))
            known = self._access.get(name)
            if known is not None:
                known.credential.update(sas)
                known.lease = lease
                continue
            credential = AzureSasCredential(sas)
            client = BlobClient.from_blob_url(base, credential=credential, transport=self.owner.transport)
            self._access[name] = _BlobAccess(client, credential, lease)

    def blob(self, name: str) -> BlobClient:
        self.prepare([name])
        with self._lock:
            return self._access[name].client

    def create_container(self) -> None:
        return None  # the service's output container exists; a node may not create containers
