"""Secrets sealed at rest: every secret value the services store (job and setup task `secrets[].value`,
registry passwords, mount account keys, admin passwords, unmanaged mount commands:
`resources.map_secrets`) is sealed here before it is written, and opened only where it leaves for a
node (the node payload, the scale set's custom data, a container group's secure environment).

A sealed value is ``sealed:v1:<base64 of nonce (12 bytes) + AES-256-GCM ciphertext and tag>``. The
key is `Settings.secrets_key` (BATCHAI_SECRETS_KEY, 32 bytes in base64; in Azure a Key Vault
reference app setting, on the local stack generated once under the state directory). Sealing a
sealed value returns it unchanged (services may seal twice); opening a plain value returns it as is
(documents written before sealing existed).
"""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import Settings
from shared.domain import resources

PREFIX = "sealed:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32


class SecretBoxError(Exception):
    """A sealed value that this key cannot open (another key, or a damaged value), or no key at all."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretBoxError(f"the secrets key must be {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    @staticmethod
    def is_sealed(value: str) -> bool:
        return isinstance(value, str) and value.startswith(PREFIX)

    def seal(self, value: str) -> str:
        if self.is_sealed(value):
            return value
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), PREFIX.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, value: str) -> str:
        if not self.is_sealed(value):
            return value
        try:
            raw = base64.b64decode(value[len(PREFIX):], validate=True)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], PREFIX.encode()).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError) as e:
            raise SecretBoxError("a sealed secret could not be opened with this service's secrets key") from e

    def seal_secrets(self, document: Any) -> Any:
        """A copy of `document` with every secret value sealed (see `resources.map_secrets`)."""
        return resources.map_secrets(document, self.seal)

    def open_all(self, document: Any) -> Any:
        """A copy of `document` with every sealed string, wherever it is, opened."""
        if isinstance(document, dict):
            return {k: self.open_all(v) for k, v in document.items()}
        if isinstance(document, list):
            return [self.open_all(v) for v in document]
        return self.open(document) if isinstance(document, str) else document


def new_key() -> str:
    """A new secrets key, as BATCHAI_SECRETS_KEY holds it."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


@lru_cache(maxsize=4)
def _box(key_text: str) -> SecretBox:
    try:
        key = base64.b64decode(key_text, validate=True)
    except binascii.Error as e:
        raise SecretBoxError("BATCHAI_SECRETS_KEY is not base64") from e
    return SecretBox(key)


def secret_box(settings: Settings) -> SecretBox:
    """The service's box. Without a key nothing secret can be stored: fail closed, naming the setting."""
    if not settings.secrets_key:
        raise SecretBoxError("BATCHAI_SECRETS_KEY is not set: the service cannot store or open secrets without it")
    return _box(settings.secrets_key)


def seal_secrets(settings: Settings, document: Any) -> Any:
    """`document` with its secret values sealed; the key is needed only when it holds one."""
    if not resources.secret_values(document):
        return document
    return secret_box(settings).seal_secrets(document)


def open_all(settings: Settings, document: Any) -> Any:
    """`document` with every sealed string opened; the key is needed only when it holds one."""
    if not _has_sealed(document):
        return document
    return secret_box(settings).open_all(document)


def _has_sealed(document: Any) -> bool:
    if isinstance(document, dict):
        return any(_has_sealed(v) for v in document.values())
    if isinstance(document, list):
        return any(_has_sealed(v) for v in document)
    return SecretBox.is_sealed(document)


def ensure_key_file(path: Path) -> str:
    """The key kept in `path` (root-only), generated at first use: a local stack's BATCHAI_SECRETS_KEY."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_key() + "\n")
    os.replace(tmp, path)
    return path.read_text().strip()
