"""Queue triggers through the local host process: poison after maxDequeueCount, redelivery after the
visibility timeout, base64 and plain messages (tests/localhost/host.json: visibilityTimeout 1 s,
maxDequeueCount 3)."""

from __future__ import annotations

import base64
import json
import uuid

from azure.storage.queue import QueueClient

from tests.localhost.conftest import SampleHost, wait_until


def _queue(host: SampleHost, name: str = "sample-work") -> QueueClient:
    return QueueClient.from_connection_string(host.conn, name)


def _tries(host: SampleHost, tag: str, at_least: int) -> list[dict[str, object]] | None:
    found = [r for r in host.records("queue") if tag in r["body"]]
    return found if len(found) >= at_least else None


def _send_b64(host: SampleHost, payload: dict[str, str]) -> str:
    text = base64.b64encode(json.dumps(payload).encode()).decode()
    _queue(host).send_message(text)
    return text


def test_failing_message_lands_in_poison_queue_after_max_dequeue_count(sample_host: SampleHost) -> None:
    tag = uuid.uuid4().hex
    original = _send_b64(sample_host, {"fail": "always", "tag": tag})
    poison = _queue(sample_host, "sample-work-poison")

    def poisoned() -> bool:
        try:
            return any(m.content == original for m in poison.peek_messages(max_messages=32))
        except Exception:  # the host creates the poison queue on first use
            return False

    wait_until(poisoned, 30, "the message in sample-work-poison")
    attempts = [r["dequeue_count"] for r in sample_host.records("queue") if tag in r["body"]]
    assert attempts == [1, 2, 3]
    assert all(tag not in base64.b64decode(m.content).decode() for m in _queue(sample_host).peek_messages(32))


def test_message_failing_once_is_redelivered_after_visibility_timeout(sample_host: SampleHost) -> None:
    tag = uuid.uuid4().hex
    _send_b64(sample_host, {"fail": "once", "tag": tag})
    tries = wait_until(lambda: _tries(sample_host, tag, 2), 30, "the redelivery")
    assert [t["dequeue_count"] for t in tries] == [1, 2]
    assert tries[0]["id"] == tries[1]["id"] and tries[1]["has_pop_receipt"]
    assert float(tries[1]["at"]) - float(tries[0]["at"]) >= 0.9  # released for visibilityTimeout (1 s), not at once

    def deleted() -> bool:
        return all(tag not in base64.b64decode(m.content).decode() for m in _queue(sample_host).peek_messages(32)) \
            and _queue(sample_host).get_queue_properties().approximate_message_count == 0

    wait_until(deleted, 10, "the message to be deleted after success")
    assert len([r for r in sample_host.records("queue") if tag in r["body"]]) == 2


def test_base64_and_plain_text_messages_both_decode(sample_host: SampleHost) -> None:
    tag = uuid.uuid4().hex
    encoded_text = f"héllo {tag} via base64"
    plain_text = f"plain {tag}: not base64!"
    _queue(sample_host).send_message(base64.b64encode(encoded_text.encode()).decode())
    _queue(sample_host).send_message(plain_text)
    tries = wait_until(lambda: _tries(sample_host, tag, 2), 20, "both messages")
    assert {t["body"] for t in tries} == {encoded_text, plain_text}
