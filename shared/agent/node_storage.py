"""The node agent's storage port: everything the agent does with storage goes through `NodeStorage`.

What a node needs, and nothing more: its own queue (receive, delete), its poison queue (send), the
events queue (send), its heartbeat blob (write), the blobs of its tasks' output prefixes and of its
setup output (`OutputBlobs`), and the blob containers of mounts, with each mount's own credentials.

Two implementations: `KeyedStorage` here (the account's connection string: the process topology,
where every node is a process of the service's machine), and `ScopedStorage`
(`shared.agent.scoped_storage`: short-lived SAS from the node credentials API, on machines that hold
no account key). Calls make one attempt each (no SDK retries): the agent's own loops retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient
from azure.storage.queue import QueueMessage

from shared.adapters import storage
from shared.agent.retry import NO_SDK_RETRY
from shared.agent.runtime import TaskStartError


class OutputBlobs(Protocol):
    """Blobs of one container that the agent writes under one prefix (a task's, or its setup's)."""

    def prepare(self, names: Sequence[str]) -> None:
        """Get access to these names ready in one go before they are used one by one (a hint)."""

    def blob(self, name: str) -> BlobClient: ...

    def create_container(self) -> None:
        """Create the container when it is missing (where the node may; else a no-op)."""


class NodeStorage(Protocol):
    def ensure_queues(self) -> None: ...

    def receive(self, max_messages: int, visibility_timeout: int) -> list[QueueMessage]: ...

    def delete_message(self, message: QueueMessage) -> None:
        """Raises ResourceNotFoundError when it is already gone."""

    def send_poison(self, text: str) -> None: ...

    def send_event(self, text: str) -> None: ...

    def heartbeat(self, metadata: Mapping[str, str]) -> None: ...

    def delete_queues(self) -> None:
        """The node leaves: its queues go (where the node may delete them; else the service does)."""

    def outputs(self, container: str, assignment_id: str | None) -> OutputBlobs:
        """The blobs of an assignment's output prefix (None: the node's setup output)."""

    def mount_container(self, account_name: str, container_name: str,
                        credentials: Mapping[str, Any] | None) -> ContainerClient:
        """The container a blob mount names, with the mount's own credentials. Raises TaskStartError."""


class ContainerBlobs:
    """`OutputBlobs` over a container client that may do anything in its container."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    def prepare(self, names: Sequence[str]) -> None:
        return None

    def blob(self, name: str) -> BlobClient:
        return self.container.get_blob_client(name)

    def create_container(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container(**NO_SDK_RETRY)


def account_of(conn: str) -> str:
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return parts.get("AccountName", "")


def keyed_container(account_name: str, container_name: str, credentials: Mapping[str, Any] | None,
                    blob_endpoint: str) -> ContainerClient:
    """A mount's container reached with its account key at `blob_endpoint`."""
    key = (credentials or {}).get("accountKey")
    if not key:
        raise TaskStartError("MountFailed", f"no account key for storage account {account_name} "
                             "(Key Vault secret references are not supported on this node)")
    return ContainerClient(blob_endpoint, container_name, credential={"account_name": account_name, "account_key": key})


class KeyedStorage:
    """`NodeStorage` through the account's connection string (the process topology)."""

    def __init__(self, conn: str, cluster_key: str, node_id: str) -> None:
        self.conn = conn
        self.cluster_key = cluster_key
        self.node_id = node_id
        self.queue_name = storage.node_queue_name(node_id)
        self.poison_queue_name = f"{self.queue_name}-poison"

    def ensure_queues(self) -> None:
        for name in (self.queue_name, storage.Q_EVENTS):
            with contextlib.suppress(ResourceExistsError):
                storage.queue(self.conn, name).create_queue(**NO_SDK_RETRY)

    def receive(self, max_messages: int, visibility_timeout: int) -> list[QueueMessage]:
        pages = storage.queue(self.conn, self.queue_name).receive_messages(
            max_messages=max_messages, visibility_timeout=visibility_timeout, **NO_SDK_RETRY)
        return list(pages)[:max_messages]

    def delete_message(self, message: QueueMessage) -> None:
        storage.queue(self.conn, self.queue_name).delete_message(message, **NO_SDK_RETRY)

    def send_poison(self, text: str) -> None:
        poison = storage.queue(self.conn, self.poison_queue_name)
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue(**NO_SDK_RETRY)
        poison.send_message(text, **NO_SDK_RETRY)

    def send_event(self, text: str) -> None:
        storage.queue(self.conn, storage.Q_EVENTS).send_message(text, **NO_SDK_RETRY)

    def heartbeat(self, metadata: Mapping[str, str]) -> None:
        blob = storage.blob_service(self.conn).get_blob_client(
            storage.C_HEARTBEATS, storage.heartbeat_blob(self.cluster_key, self.node_id))
        blob.upload_blob(b"", overwrite=True, metadata=dict(metadata), **NO_SDK_RETRY)

    def delete_queues(self) -> None:
        for name in (self.queue_name, self.poison_queue_name):
            with contextlib.suppress(ResourceNotFoundError):
                storage.queue(self.conn, name).delete_queue(**NO_SDK_RETRY)

    def outputs(self, container: str, assignment_id: str | None) -> OutputBlobs:
        return ContainerBlobs(storage.container(self.conn, container))

    def mount_container(self, account_name: str, container_name: str,
                        credentials: Mapping[str, Any] | None) -> ContainerClient:
        """Through the agent's own connection when it is the same account (always so on the local
        stack, where Azurite is the only account), else with the mount's key."""
        if account_name.lower() == account_of(self.conn).lower():
            return storage.container(self.conn, container_name)
        return keyed_container(account_name, container_name, credentials,
                               f"https://{account_name}.blob.core.windows.net")
