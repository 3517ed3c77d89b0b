"""The bearer token of an `Authorization` header (RFC 6750): what callers and nodes present.

Validation is elsewhere: callers' tokens in `shared.services.authorization`, nodes' in
`shared.services.node_credentials`, both through `shared.adapters.tokens`.
"""

from __future__ import annotations


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
