"""The local API token: generated at first start, kept under the state directory only as its sha256
(`<state>/local/token.sha256`); the plain token lives in the endpoint file for the local user."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_path(state_dir: Path) -> Path:
    return state_dir / "local" / "token.sha256"


def ensure_token(state_dir: Path, known: str | None) -> tuple[str, str]:
    """(token, sha256): the known token when it matches the stored hash, else a new one (stored hashed)."""
    path = hash_path(state_dir)
    stored = path.read_text().strip() if path.exists() else None
    if known and stored and secrets.compare_digest(token_hash(known), stored):
        return known, stored
    token = secrets.token_urlsafe(32)
    digest = token_hash(token)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(digest + "\n")
    return token, digest
