"""API authentication: a bearer token whose SHA-256 matches the configured hash.

Fails closed: with no hash configured every token is refused. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_ok(authorization: str | None, token_sha256: str | None) -> bool:
    token = bearer_token(authorization)
    if not token_sha256 or token is None:
        return False
    digest = hashlib.sha256(token.encode()).hexdigest()
    return hmac.compare_digest(digest.lower(), token_sha256.strip().lower())
