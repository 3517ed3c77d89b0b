"""Bearer token validation against an OpenID Connect issuer (Entra ID, or the local stack's issuer).

A `TokenValidator` accepts a JWT only when: its algorithm is RS256 (never `none` or HMAC), `iss`
equals the policy's issuer exactly, `aud` is one of the policy's audiences, the signature verifies
with the issuer's key named by the header `kid`, `exp`/`nbf`/`iat` hold within the leeway, and the
claims every issued token carries are present. `InvalidToken` says which check failed and never
echoes the token.

Keys come from the issuer's JWKS, found through its discovery document
(`{issuer}/.well-known/openid-configuration`), fetched over https trusting the policy's CA file
(the local stack) or the system CAs. They are cached; a token naming an unknown `kid` causes a
re-fetch at most once per 30 s, so a key rotation is picked up and a flood of made-up key ids does
not hammer the issuer. An unreachable issuer raises `IssuerUnreachable` (transient, not a verdict
on the token).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

ALGORITHM = "RS256"
REFETCH_INTERVAL_S = 30.0
KEYS_MAX_AGE_S = 3600.0  # keys are re-read at least this often, so a withdrawn key stops working
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "nbf", "iat")
HTTP_TIMEOUT_S = 10.0


class InvalidToken(Exception):
    """The token was refused; str() names the failed check."""


class IssuerUnreachable(ConnectionError):
    """The issuer's discovery document or keys could not be fetched."""


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    audiences: frozenset[str]
    ca_file: str = ""
    leeway_s: int = 60


class TokenValidator:
    """Validates tokens for one policy, with the issuer's keys cached. Thread-safe."""

    def __init__(self, policy: TokenPolicy, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._client: PyJWKClient | None = None
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None

    def validate(self, token: str) -> dict[str, Any]:
        header, unverified = self._parse(token)
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"algorithm refused: only {ALGORITHM} is accepted")
        if unverified.get("iss") != self.policy.issuer:
            raise InvalidToken("issuer refused: the token was not issued by the trusted issuer")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("key id missing: the token header names no signing key")
        key = self._key(kid)
        try:
            return jwt.decode(token, key, algorithms=[ALGORITHM], audience=sorted(self.policy.audiences),
                              issuer=self.policy.issuer, leeway=self.policy.leeway_s,
                              options={"require": list(REQUIRED_CLAIMS)})
        except jwt.InvalidSignatureError:
            raise InvalidToken("signature invalid") from None
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired: exp is in the past beyond the allowed clock skew") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not yet valid: nbf or iat is in the future beyond the allowed clock skew") from None
        except jwt.MissingRequiredClaimError as err:
            raise InvalidToken(f"claim missing: {err.claim}") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("audience refused: aud names none of the accepted audiences") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("issuer refused: the token was not issued by the trusted issuer") from None
        except jwt.PyJWTError as err:
            raise InvalidToken(f"malformed: {type(err).__name__}") from None

    @staticmethod
    def _parse(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidToken("malformed: not a signed JWT") from None
        return header, claims

    def _key(self, kid: str) -> PyJWK:
        with self._lock:
            now = self._monotonic()
            never = self._fetched_at is None
            age = 0.0 if self._fetched_at is None else now - self._fetched_at
            if never or age >= KEYS_MAX_AGE_S or (kid not in self._keys and age >= REFETCH_INTERVAL_S):
                try:
                    self._refresh(now)
                except IssuerUnreachable:
                    if kid not in self._keys:
                        raise
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("signing key unknown: the issuer publishes no key with this key id")
        return key

    def _refresh(self, now: float) -> None:
        # Once keys are known, a failed fetch also waits for the next interval: an unreachable issuer
        # is not asked again on every request. With no keys yet, every request tries.
        if self._keys:
            self._fetched_at = now
        try:
            if self._client is None:
                context = self._ssl_context()
                self._client = PyJWKClient(self._jwks_uri(context), cache_jwk_set=False, ssl_context=context,
                                           timeout=HTTP_TIMEOUT_S)
            keys = self._client.get_signing_keys(refresh=True)
        except jwt.PyJWKClientConnectionError as err:
            raise IssuerUnreachable(f"the issuer's keys could not be fetched: {err}") from err
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError) as err:
            raise IssuerUnreachable(f"the issuer published no usable keys: {err}") from err
        self._keys = {k.key_id: k for k in keys if k.key_id and k.algorithm_name == ALGORITHM}
        self._fetched_at = now

    def _ssl_context(self) -> ssl.SSLContext:
        # Made on first use, not at construction: the local stack may write its CA file after the
        # validator exists.
        try:
            return ssl.create_default_context(cafile=self.policy.ca_file or None)
        except OSError as err:
            raise IssuerUnreachable(f"the CA file {self.policy.ca_file!r} cannot be read: {err}") from err

    def _jwks_uri(self, context: ssl.SSLContext) -> str:
        url = self.policy.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S, context=context) as response:
                document = json.load(response)
        except (OSError, ValueError) as err:
            raise IssuerUnreachable(f"the issuer's discovery document could not be fetched: {err}") from err
        if not isinstance(document, dict) or document.get("issuer") != self.policy.issuer:
            raise IssuerUnreachable("the discovery document names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise IssuerUnreachable("the discovery document names no jwks_uri")
        return jwks_uri


_validators: dict[tuple[str, frozenset[str], str], TokenValidator] = {}
_validators_lock = threading.Lock()


def validator(issuer: str, audiences: Iterable[str], ca_file: str = "") -> TokenValidator:
    """The process's one validator for (issuer, audiences, CA file), so its key cache is shared."""
    policy = TokenPolicy(issuer, frozenset(audiences), ca_file)
    cache_key = (policy.issuer, policy.audiences, policy.ca_file)
    with _validators_lock:
        found = _validators.get(cache_key)
        if found is None:
            found = _validators[cache_key] = TokenValidator(policy)
        return found
