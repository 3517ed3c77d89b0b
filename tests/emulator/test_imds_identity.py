"""IMDS managed identity tokens: which identity is chosen, the token's claims (validated against the issuer)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from azure.identity import ManagedIdentityCredential

from shared.adapters.tokens import TokenPolicy, TokenValidator
from shared.emulator.issuer import IssuerServer
from shared.localstack.tls import TlsFiles
from tests.identity.helpers import TENANT, Identity, Vm, imds_client, running_imds, running_issuer

RESOURCE = "api://batchai-nodes"
SS_ID = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/batchai-compute/providers/"
         "Microsoft.Compute/virtualMachineScaleSets/bai-c0ffee")
UAI_ID = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/batchai-identities/providers/"
          "Microsoft.ManagedIdentity/userAssignedIdentities/")
SYSTEM = Identity("system", SS_ID, "11111111-0000-4000-8000-000000000001", "11111111-0000-4000-8000-000000000002")
READER = Identity("user", UAI_ID + "reader", "22222222-0000-4000-8000-000000000001",
                  "22222222-0000-4000-8000-000000000002")
WRITER = Identity("user", UAI_ID + "writer", "33333333-0000-4000-8000-000000000001",
                  "33333333-0000-4000-8000-000000000002")


def _vm(*identities: Identity) -> Vm:
    return Vm(resource_id=SS_ID.replace("resourcegroups", "resourceGroups") + "/virtualMachines/0",
              name="bai-c0ffee_0", computer_name="baic0ffee000000", vm_id="9a6b1c2d-0000-4000-8000-000000000000",
              private_ip="127.0.0.1", scale_set="bai-c0ffee", identities=identities)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IssuerServer, TlsFiles]]:
    with running_issuer(tmp_path_factory.mktemp("issuer")) as running:
        yield running


@pytest.fixture(scope="module")
def validator(stack: tuple[IssuerServer, TlsFiles]) -> TokenValidator:
    server, tls = stack
    return TokenValidator(TokenPolicy(server.issuer.url, frozenset({RESOURCE}), str(tls.ca_file)))


def _token(stack: tuple[IssuerServer, TlsFiles], vm: Vm, **selector: str) -> httpx.Response:
    with running_imds(stack[0].issuer, {"127.0.0.1": vm}) as imds, imds_client(imds) as client:
        return client.get("/metadata/identity/oauth2/token",
                          params={"api-version": "2018-02-01", "resource": RESOURCE, **selector})


@pytest.mark.parametrize(("selector", "expected"), [
    ({}, SYSTEM),
    ({"client_id": READER.client_id}, READER),
    ({"object_id": WRITER.principal_id}, WRITER),
    ({"mi_res_id": READER.resource_id}, READER),
    ({"msi_res_id": WRITER.resource_id.lower()}, WRITER),  # resource ids compare case-insensitively
    ({"client_id": SYSTEM.client_id.upper()}, SYSTEM),
])
def test_the_token_is_for_the_selected_identity_and_validates(
        stack: tuple[IssuerServer, TlsFiles], validator: TokenValidator, selector: dict[str, str],
        expected: Identity) -> None:
    reply = _token(stack, _vm(SYSTEM, READER, WRITER), **selector)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    claims = validator.validate(body["access_token"])
    assert {k: claims[k] for k in ("aud", "iss", "sub", "oid", "appid", "tid", "xms_mirid")} == {
        "aud": RESOURCE, "iss": stack[0].issuer.url, "sub": expected.principal_id, "oid": expected.principal_id,
        "appid": expected.client_id, "tid": TENANT, "xms_mirid": expected.resource_id}
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    assert body["token_type"] == "Bearer" and body["resource"] == RESOURCE and body["client_id"] == expected.client_id
    assert body["expires_in"] == "3600"
    assert body["expires_on"] == str(claims["exp"]) and body["not_before"] == str(claims["nbf"])


def test_the_only_user_identity_is_the_default_without_a_system_identity(
        stack: tuple[IssuerServer, TlsFiles], validator: TokenValidator) -> None:
    reply = _token(stack, _vm(READER))
    assert reply.status_code == 200
    assert validator.validate(reply.json()["access_token"])["xms_mirid"] == READER.resource_id


@pytest.mark.parametrize(("identities", "selector", "description"), [
    ((SYSTEM, READER), {"client_id": WRITER.client_id}, "Identity not found"),
    ((SYSTEM,), {"object_id": READER.principal_id}, "Identity not found"),
    ((SYSTEM,), {"mi_res_id": WRITER.resource_id}, "Identity not found"),
    ((), {}, "Identity not found"),
    ((READER, WRITER), {}, "Multiple user assigned identities exist"),
    ((SYSTEM, READER), {"client_id": READER.client_id, "object_id": READER.principal_id}, "Only one of"),
])
def test_an_identity_the_vm_does_not_have_is_refused(
        stack: tuple[IssuerServer, TlsFiles], identities: tuple[Identity, ...], selector: dict[str, str],
        description: str) -> None:
    reply = _token(stack, _vm(*identities), **selector)
    assert reply.status_code == 400
    body = reply.json()
    assert body["error"] == "invalid_request" and body["error_description"].startswith(description)
    if description == "Identity not found":
        assert body == {"error": "invalid_request", "error_description": "Identity not found"}


def test_a_resource_is_required(stack: tuple[IssuerServer, TlsFiles]) -> None:
    with running_imds(stack[0].issuer, {"127.0.0.1": _vm(SYSTEM)}) as imds, imds_client(imds) as client:
        reply = client.get("/metadata/identity/oauth2/token", params={"api-version": "2018-02-01"})
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_request"


def test_the_azure_sdk_managed_identity_credential_gets_tokens(
        stack: tuple[IssuerServer, TlsFiles], validator: TokenValidator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
                 "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_SERVER_THUMBPRINT"):
        monkeypatch.delenv(name, raising=False)
    with running_imds(stack[0].issuer, {"127.0.0.1": _vm(SYSTEM, READER)}) as imds:
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.url)  # where the SDK finds IMDS
        system = ManagedIdentityCredential().get_token(f"{RESOURCE}/.default")
        reader = ManagedIdentityCredential(client_id=READER.client_id).get_token(f"{RESOURCE}/.default")
    assert validator.validate(system.token)["oid"] == SYSTEM.principal_id
    claims = validator.validate(reader.token)
    assert claims["oid"] == READER.principal_id and reader.expires_on == claims["exp"]
