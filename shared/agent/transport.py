"""The node agent's storage channel: its own queue, the events queue and its heartbeat blob.

The agent is the only reader of queue ``node-<node id>`` and the only writer of its heartbeat blob
(`storage.heartbeat_blob`). Events it sends are retried until
they are accepted: an event is the only copy of what happened on the node.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueMessage

from shared.adapters import storage
from shared.agent.retry import NO_SDK_RETRY, with_retries
from shared.domain.messages import NodeEvent


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class AgentChannel:
    conn: str
    cluster_key: str
    node_id: str
    visibility_timeout_s: int = 60
    give_up: threading.Event | None = None  # set: stop retrying (the agent exits without reporting)

    @property
    def queue_name(self) -> str:
        return storage.node_queue_name(self.node_id)

    @property
    def poison_queue_name(self) -> str:
        return f"{self.queue_name}-poison"

    def ensure_queues(self) -> None:
        def create() -> None:
            for name in (self.queue_name, storage.Q_EVENTS):
                with contextlib.suppress(ResourceExistsError):
                    storage.queue(self.conn, name).create_queue(**NO_SDK_RETRY)
        with_retries(create, "creating the node queue", self.give_up)

    def receive(self, max_messages: int = 8) -> list[QueueMessage]:
        """One poll of the node queue (raises transient errors: the loop backs off and polls again)."""
        pages: Iterator[QueueMessage] = storage.queue(self.conn, self.queue_name).receive_messages(
            max_messages=max_messages, visibility_timeout=self.visibility_timeout_s, **NO_SDK_RETRY)
        return list(pages)[:max_messages]

    def delete(self, message: QueueMessage) -> None:
        def call() -> None:
            with contextlib.suppress(ResourceNotFoundError):  # already deleted: the same outcome
                storage.queue(self.conn, self.queue_name).delete_message(message, **NO_SDK_RETRY)
        with_retries(call, "deleting a node message", self.give_up)

    def reject(self, message: QueueMessage, reason: str) -> None:
        """Move a message the agent cannot read to ``node-<id>-poison`` with the reason, then delete it."""
        body = json.dumps({"reason": reason, "message": str(message.content)})

        def call() -> None:
            poison = storage.queue(self.conn, self.poison_queue_name)
            with contextlib.suppress(ResourceExistsError):
                poison.create_queue(**NO_SDK_RETRY)
            poison.send_message(body, **NO_SDK_RETRY)
        with_retries(call, "rejecting a node message", self.give_up)
        self.delete(message)

    def send(self, kind: str, **fields: Any) -> NodeEvent:
        event = NodeEvent(kind=kind, cluster_key=self.cluster_key, node_id=self.node_id, at=utc_now(), **fields)
        text = event.to_json()
        with_retries(lambda: storage.queue(self.conn, storage.Q_EVENTS).send_message(text, **NO_SDK_RETRY),
                     f"sending {kind}", self.give_up)
        return event

    def heartbeat(self, assignment_ids: list[str]) -> None:
        """One heartbeat (no retry here: the next beat is the retry)."""
        blob = storage.blob_service(self.conn).get_blob_client(
            storage.C_HEARTBEATS, storage.heartbeat_blob(self.cluster_key, self.node_id))
        blob.upload_blob(b"", overwrite=True, metadata={"assignments": ",".join(assignment_ids),
                                                        "pid": str(os.getpid())}, **NO_SDK_RETRY)

    def delete_queues(self) -> None:
        def call() -> None:
            for name in (self.queue_name, self.poison_queue_name):
                with contextlib.suppress(ResourceNotFoundError):
                    storage.queue(self.conn, name).delete_queue(**NO_SDK_RETRY)
        with_retries(call, "deleting the node queue", self.give_up)
