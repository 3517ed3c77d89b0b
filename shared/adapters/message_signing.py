"""Signed node messages: the service signs every message it puts on a node queue, and an agent acts
only on a message that verifies with the service's public key and names the agent's own node.

Anyone who can write a node's queue (in the process topology every agent holds the account key)
could otherwise make that node run anything. A signed message is the message's JSON object plus
``node`` (the node it is for: a message for one node is refused by every other), ``kid`` (which
key signed it) and ``sig``: Ed25519 over `CONTEXT` and the canonical JSON (sorted keys, no
whitespace, ASCII) of every field but ``sig``.

Keys are raw 32-byte Ed25519 keys in base64: the service's private key is `Settings.message_key`
(BATCHAI_MESSAGE_KEY); agents get the public key from the node credentials API (machines) or from
their environment (process nodes, `Settings.message_public_key`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.config import Settings

CONTEXT = b"batchai node message v1\n"
NODE, KEY_ID, SIGNATURE = "node", "kid", "sig"


class BadMessage(Exception):
    """A node message that must not be acted on; str() says why (never the key)."""


def _raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"{what} is not base64") from error
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes, not {len(raw)}")
    return raw


def new_key() -> str:
    """A new private key, as BATCHAI_MESSAGE_KEY holds it."""
    return base64.b64encode(_raw(Ed25519PrivateKey.generate())).decode()


def public_key_of(private_key: str) -> str:
    key = Ed25519PrivateKey.from_private_bytes(_decode(private_key, "the message key"))
    return base64.b64encode(_raw(key.public_key())).decode()


def key_id(public_key: str) -> str:
    return hashlib.sha256(_decode(public_key, "the message public key")).hexdigest()[:16]


def canonical(fields: dict[str, Any]) -> bytes:
    return CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class MessageSigner:
    def __init__(self, private_key: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_decode(private_key, "the message key"))
        self.public_key = base64.b64encode(_raw(self._key.public_key())).decode()
        self.key_id = key_id(self.public_key)

    def sign(self, text: str, node_id: str) -> str:
        """The message (JSON object text) signed for `node_id`."""
        fields = json.loads(text)
        if not isinstance(fields, dict) or fields.keys() & {NODE, KEY_ID, SIGNATURE}:
            raise ValueError("a node message is a JSON object without envelope fields")
        fields.update({NODE: node_id, KEY_ID: self.key_id})
        signature = self._key.sign(canonical(fields))
        return json.dumps({**fields, SIGNATURE: base64.b64encode(signature).decode()})


class MessageVerifier:
    def __init__(self, public_key: str) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(_decode(public_key, "the message public key"))
        self.key_id = key_id(public_key)

    def verify(self, text: str, node_id: str) -> dict[str, Any]:
        """The fields of a message signed for `node_id`; raises BadMessage otherwise."""
        try:
            fields = json.loads(text)
        except ValueError as error:
            raise BadMessage(f"not JSON: {error}") from None
        if not isinstance(fields, dict):
            raise BadMessage("not a JSON object")
        signature = fields.pop(SIGNATURE, None)
        if not isinstance(signature, str) or not signature:
            raise BadMessage("unsigned: the message carries no signature")
        if fields.get(KEY_ID) != self.key_id:
            raise BadMessage(f"signed with an unknown key ({str(fields.get(KEY_ID))[:32]!r})")
        try:
            self._key.verify(base64.b64decode(signature, validate=True), canonical(fields))
        except (InvalidSignature, binascii.Error, ValueError):
            raise BadMessage("bad signature: the message is not the one the service signed") from None
        if fields.get(NODE) != node_id:
            raise BadMessage(f"signed for another node ({str(fields.get(NODE))[:64]!r})")
        return fields


@lru_cache(maxsize=4)
def _signer(private_key: str) -> MessageSigner:
    return MessageSigner(private_key)


def signer(settings: Settings) -> MessageSigner | None:
    """The service's signer; None without BATCHAI_MESSAGE_KEY (its messages then go unsigned, and
    every agent refuses them: nothing runs until the key is set)."""
    return _signer(settings.message_key) if settings.message_key else None


def sign(settings: Settings, message_json: str, node_id: str) -> str:
    found = signer(settings)
    return found.sign(message_json, node_id) if found else message_json
