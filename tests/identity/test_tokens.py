"""Token validation against a running issuer: what is refused (and why), key rotation, refetch limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.adapters.tokens import InvalidToken, IssuerUnreachable, TokenPolicy, TokenValidator, validator
from shared.emulator.issuer import Issuer, IssuerServer
from shared.localstack.azurite import free_port
from shared.localstack.tls import TlsFiles
from tests.identity.helpers import TENANT, running_issuer

AUDIENCE = "api://batchai-nodes"
KEYS_PATH = f"/{TENANT}/discovery/v2.0/keys"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IssuerServer, TlsFiles]]:
    with running_issuer(tmp_path_factory.mktemp("issuer")) as running:
        yield running


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _validator(stack: tuple[IssuerServer, TlsFiles], clock: Callable[[], float] = time.monotonic) -> TokenValidator:
    server, tls = stack
    return TokenValidator(TokenPolicy(server.issuer.url, frozenset({AUDIENCE, "api://other"}), str(tls.ca_file)),
                          monotonic=clock)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict[str, object], claims: dict[str, object], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
    return f"{signing_input.decode()}.{_b64(sign(signing_input))}"


def _claims(issuer: Issuer, **extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": issuer.url, "aud": AUDIENCE, "sub": "s", "iat": now, "nbf": now, "exp": now + 600, **extra}


def _other_issuer(issuer: Issuer, key: rsa.RSAPrivateKey) -> str:
    return Issuer(key, "https://127.0.0.1:1/someone-else/v2.0", TENANT).sign({"aud": AUDIENCE, "sub": "s"})


def _public_pem(issuer: Issuer) -> bytes:
    return issuer.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)


REFUSALS: dict[str, tuple[Callable[[Issuer, rsa.RSAPrivateKey], str], str]] = {
    "other issuer": (_other_issuer, "issuer refused"),
    "wrong audience": (lambda i, _: i.sign({"aud": "api://someone-else", "sub": "s"}), "audience refused"),
    "expired beyond leeway": (lambda i, _: i.sign({"aud": AUDIENCE, "sub": "s"}, 600, time.time() - 3600),
                              "expired"),
    "nbf in the future": (lambda i, _: i.sign({"aud": AUDIENCE, "sub": "s", "nbf": int(time.time()) + 900}),
                          "not yet valid"),
    "iat in the future": (lambda i, _: i.sign({"aud": AUDIENCE, "sub": "s"}, now=time.time() + 900),
                          "not yet valid"),
    "signed by another key with the same kid": (
        lambda i, k: jwt.encode(_claims(i), k, algorithm="RS256", headers={"kid": i.kid}), "signature invalid"),
    "alg none": (lambda i, _: _hand_made({"alg": "none", "typ": "JWT", "kid": i.kid}, _claims(i), lambda _: b""),
                 "algorithm refused"),
    "HS256 with the public key as secret": (
        lambda i, _: _hand_made({"alg": "HS256", "typ": "JWT", "kid": i.kid}, _claims(i),
                                lambda data: hmac.new(_public_pem(i), data, hashlib.sha256).digest()),
        "algorithm refused"),
    "RS512": (lambda i, _: jwt.encode(_claims(i), i.key, algorithm="RS512", headers={"kid": i.kid}),
              "algorithm refused"),
    "malformed": (lambda i, _: "not-a-token", "malformed"),
    "malformed segments": (lambda i, _: "e30.e30.e30.e30", "malformed"),
    "garbage payload": (lambda i, _: _b64(b'{"alg":"RS256"}') + ".bm90IGpzb24." + _b64(b"x"), "malformed"),
    "no kid": (lambda i, _: jwt.encode(_claims(i), i.key, algorithm="RS256"), "key id missing"),
    "unknown kid": (lambda i, k: jwt.encode(_claims(i), k, algorithm="RS256", headers={"kid": "nobody"}),
                    "signing key unknown"),
    "no subject": (lambda i, _: i.sign({"aud": AUDIENCE}), "claim missing: sub"),
    "no expiry": (lambda i, k: jwt.encode({key: value for key, value in _claims(i).items() if key != "exp"},
                                          i.key, algorithm="RS256", headers={"kid": i.kid}), "claim missing: exp"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_failed_check_and_never_echo_the_token(
        case: str, stack: tuple[IssuerServer, TlsFiles], stranger_key: rsa.RSAPrivateKey) -> None:
    make, expected = REFUSALS[case]
    token = make(stack[0].issuer, stranger_key)
    with pytest.raises(InvalidToken) as refused:
        _validator(stack).validate(token)
    message = str(refused.value)
    assert message.startswith(expected), message
    for part in token.split("."):
        assert len(part) < 8 or part not in message


def test_a_valid_token_within_the_leeway_is_accepted(stack: tuple[IssuerServer, TlsFiles]) -> None:
    issuer = stack[0].issuer
    claims = _validator(stack).validate(issuer.sign({"aud": "api://other", "sub": "s"}, 600, time.time() - 630))
    assert claims["aud"] == "api://other" and claims["sub"] == "s"


def test_a_token_for_several_audiences_is_accepted_when_one_is_ours(stack: tuple[IssuerServer, TlsFiles]) -> None:
    token = stack[0].issuer.sign({"aud": ["api://someone-else", AUDIENCE], "sub": "s"})
    assert _validator(stack).validate(token)["sub"] == "s"


def test_unknown_key_ids_refetch_the_keys_at_most_every_30_seconds(
        stack: tuple[IssuerServer, TlsFiles], stranger_key: rsa.RSAPrivateKey) -> None:
    server = stack[0]
    clock = Clock()
    validator_ = _validator(stack, clock)
    before = server.requested(KEYS_PATH)
    validator_.validate(server.issuer.sign({"aud": AUDIENCE, "sub": "s"}))
    assert server.requested(KEYS_PATH) == before + 1

    def unknown(kid: str) -> str:
        return jwt.encode(_claims(server.issuer), stranger_key, algorithm="RS256", headers={"kid": kid})

    for n in range(20):
        clock.now += 1
        with pytest.raises(InvalidToken, match="signing key unknown"):
            validator_.validate(unknown(f"made-up-{n}"))
    assert server.requested(KEYS_PATH) == before + 1  # 20 s of made-up key ids: no fetch
    clock.now += 10  # 30 s since the last fetch
    with pytest.raises(InvalidToken, match="signing key unknown"):
        validator_.validate(unknown("late"))
    assert server.requested(KEYS_PATH) == before + 2
    for n in range(5):
        with pytest.raises(InvalidToken, match="signing key unknown"):
            validator_.validate(unknown(f"again-{n}"))
    validator_.validate(server.issuer.sign({"aud": AUDIENCE, "sub": "s"}))  # a known kid never fetches
    assert server.requested(KEYS_PATH) == before + 2


def test_a_rotated_key_is_accepted_once_the_keys_change(tmp_path: Path) -> None:
    with running_issuer(tmp_path) as (server, tls):
        clock = Clock()
        validator_ = TokenValidator(TokenPolicy(server.issuer.url, frozenset({AUDIENCE}), str(tls.ca_file)),
                                    monotonic=clock)
        old = server.issuer
        validator_.validate(old.sign({"aud": AUDIENCE, "sub": "s"}))
        server.issuer = Issuer.load_or_create(tmp_path / "rotated", old.url, TENANT)
        assert server.issuer.kid != old.kid
        clock.now += 30
        claims = validator_.validate(server.issuer.sign({"aud": AUDIENCE, "sub": "after"}))
        assert claims["sub"] == "after"
        clock.now += 30
        with pytest.raises(InvalidToken, match="signing key unknown"):
            validator_.validate(old.sign({"aud": AUDIENCE, "sub": "s"}))  # withdrawn with the old JWKS


def test_an_unreachable_issuer_is_a_transient_error_not_a_verdict(stack: tuple[IssuerServer, TlsFiles]) -> None:
    server, tls = stack
    nowhere = f"https://127.0.0.1:{free_port()}/{TENANT}/v2.0"
    token = Issuer(server.issuer.key, nowhere, TENANT).sign({"aud": AUDIENCE, "sub": "s"})
    with pytest.raises(IssuerUnreachable):
        TokenValidator(TokenPolicy(nowhere, frozenset({AUDIENCE}), str(tls.ca_file))).validate(token)


def test_the_issuer_is_trusted_only_through_the_given_ca(stack: tuple[IssuerServer, TlsFiles]) -> None:
    issuer = stack[0].issuer
    system_cas = TokenValidator(TokenPolicy(issuer.url, frozenset({AUDIENCE})))
    with pytest.raises(IssuerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        system_cas.validate(issuer.sign({"aud": AUDIENCE, "sub": "s"}))


def test_validator_is_one_per_issuer_audiences_and_ca(stack: tuple[IssuerServer, TlsFiles]) -> None:
    server, tls = stack
    first = validator(server.issuer.url, [AUDIENCE, "api://other"], str(tls.ca_file))
    assert validator(server.issuer.url, ("api://other", AUDIENCE), str(tls.ca_file)) is first
    assert validator(server.issuer.url, [AUDIENCE], str(tls.ca_file)) is not first
    assert first.policy == TokenPolicy(server.issuer.url, frozenset({AUDIENCE, "api://other"}), str(tls.ca_file))
    assert first.validate(server.issuer.sign({"aud": AUDIENCE, "sub": "s"}))["sub"] == "s"


def test_a_validator_made_before_the_ca_file_exists_works_once_it_does(
        stack: tuple[IssuerServer, TlsFiles], tmp_path: Path) -> None:
    server, tls = stack
    later = tmp_path / "ca.pem"
    early = TokenValidator(TokenPolicy(server.issuer.url, frozenset({AUDIENCE}), str(later)))
    token = server.issuer.sign({"aud": AUDIENCE, "sub": "s"})
    with pytest.raises(IssuerUnreachable, match="CA file"):
        early.validate(token)
    later.write_bytes(tls.ca_file.read_bytes())
    assert early.validate(token)["sub"] == "s"
