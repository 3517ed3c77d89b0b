"""The node agent's channel to the service: its own queue, the events queue and its heartbeat blob.

The agent is the only reader of queue ``node-<node id>`` and the only writer of its heartbeat blob
(`storage.heartbeat_blob`), through its `NodeStorage`. Events it sends are retried until they are
accepted: an event is the only copy of what happened on the node.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueMessage

from shared.agent.node_storage import NodeStorage
from shared.agent.retry import with_retries
from shared.domain.messages import NodeEvent

RECEIVE_BATCH = 8  # node messages received per poll


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class AgentChannel:
    storage: NodeStorage
    cluster_key: str
    node_id: str
    visibility_timeout_s: int = 60
    give_up: threading.Event | None = None  # set: stop retrying (the agent exits without reporting)

    def ensure_queues(self) -> None:
        with_retries(self.storage.ensure_queues, "creating the node queue", self.give_up)

    def receive(self, max_messages: int = RECEIVE_BATCH) -> list[QueueMessage]:
        """One poll of the node queue (raises transient errors: the loop backs off and polls again)."""
        return self.storage.receive(max_messages, self.visibility_timeout_s)

    def delete(self, message: QueueMessage) -> None:
        def call() -> None:
            with contextlib.suppress(ResourceNotFoundError):  # already deleted: the same outcome
                self.storage.delete_message(message)
        with_retries(call, "deleting a node message", self.give_up)

    def reject(self, message: QueueMessage, reason: str) -> None:
        """Move a message the agent cannot read to ``node-<id>-poison`` with the reason, then delete it."""
        body = json.dumps({"reason": reason, "message": str(message.content)})
        with_retries(lambda: self.storage.send_poison(body), "rejecting a node message", self.give_up)
        self.delete(message)

    def send(self, kind: str, at: str | None = None, **fields: Any) -> NodeEvent:
        """Send an event stamped `at` (default: now)."""
        event = NodeEvent(kind=kind, cluster_key=self.cluster_key, node_id=self.node_id, at=at or utc_now(), **fields)
        text = event.to_json()
        with_retries(lambda: self.storage.send_event(text), f"sending {kind}", self.give_up)
        return event

    def resend(self, text: str, kind: str) -> None:
        """Send an event again exactly as it was first sent (the service handles repeats idempotently)."""
        with_retries(lambda: self.storage.send_event(text), f"sending {kind} again", self.give_up)

    def heartbeat(self, assignment_ids: list[str]) -> None:
        """One heartbeat (no retry here: the next beat is the retry)."""
        self.storage.heartbeat({"assignments": ",".join(assignment_ids), "pid": str(os.getpid())})

    def delete_queues(self) -> None:
        with_retries(self.storage.delete_queues, "deleting the node queue", self.give_up)
