"""Node message signatures: what verifies, and every way a message that must not be acted on fails."""

from __future__ import annotations

import base64
import json

import pytest

from shared.adapters.message_signing import BadMessage, MessageSigner, MessageVerifier, new_key, public_key_of
from shared.domain.messages import Assignment, Leave, StopTask, node_message, parse_node_message

KEY = new_key()
SIGNER = MessageSigner(KEY)
VERIFIER = MessageVerifier(public_key_of(KEY))


def test_a_signed_message_verifies_for_its_node_and_reads_as_the_message() -> None:
    message = Assignment("a1", "s|rg|ws|exp|job", attempt=2, task_index=1)
    text = SIGNER.sign(message.to_json(), "node-7")
    assert node_message(VERIFIER.verify(text, "node-7")) == message
    assert parse_node_message(text) == message  # the envelope does not change what the message says
    stop = StopTask("a1", "terminated", grace_seconds=2.5)
    assert node_message(VERIFIER.verify(SIGNER.sign(stop.to_json(), "node-7"), "node-7")) == stop


def _tampered(text: str, **changes: object) -> str:
    fields = json.loads(text)
    fields.update(changes)
    return json.dumps(fields)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "sig"}), "unsigned"),
    (lambda t: Assignment("a1", "s|rg|ws|exp|job", 2, 1).to_json(), "unsigned"),
    (lambda t: _tampered(t, attempt=3), "bad signature"),
    (lambda t: _tampered(t, assignment_id="a2"), "bad signature"),
    (lambda t: _tampered(t, node="node-8"), "bad signature"),  # re-addressed to another node
    (lambda t: _tampered(t, sig=base64.b64encode(b"x" * 64).decode()), "bad signature"),
    (lambda t: _tampered(t, sig="not base64!"), "bad signature"),
    (lambda t: MessageSigner(new_key()).sign(Leave("bye").to_json(), "node-7"), "unknown key"),
    (lambda t: SIGNER.sign(Leave("bye").to_json(), "node-8"), "another node"),
    (lambda t: "not json", "not JSON"),
    (lambda t: "[1, 2]", "not a JSON object"),
])
def test_messages_that_must_not_be_acted_on_are_refused_with_the_reason(make, reason: str) -> None:  # noqa: ANN001
    text = SIGNER.sign(Assignment("a1", "s|rg|ws|exp|job", 2, 1).to_json(), "node-7")
    with pytest.raises(BadMessage) as refused:
        VERIFIER.verify(make(text), "node-7")
    assert reason in str(refused.value)


def test_the_signer_refuses_a_message_that_already_has_an_envelope() -> None:
    with pytest.raises(ValueError):
        SIGNER.sign(json.dumps({"kind": "leave", "reason": "x", "node": "other"}), "node-7")
