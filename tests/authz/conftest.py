"""Authorization fixtures: principals with tokens from the session's issuer, and two workspaces (A with a
cluster, an experiment, a job and a file server; B beside it) with one principal per role on A and an
owner of B, all assigned through the role assignment API by the service's owner."""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import jwt
import pytest

from shared.domain import rbac
from shared.emulator.issuer import Issuer
from shared.localstack.token import principal_token
from tests.api.conftest import API

AUTHZ_API = "api-version=2022-04-01"
CLUSTER = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                          "scaleSettings": {"manual": {"targetNodeCount": 0}}}}
FILESERVER = {"properties": {"vmSize": "STANDARD_D2", "sshConfiguration": {"userAccountSettings": {
    "adminUserName": "u"}}, "dataDisks": {"diskSizeInGB": 1, "diskCount": 1, "storageAccountType": "Standard_LRS"}}}
ROLES_ON_A = {"reader": rbac.READER, "submitter": rbac.JOB_SUBMITTER, "contributor": rbac.CONTRIBUTOR,
              "owner": rbac.OWNER}


def client(endpoint: dict[str, str], token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=endpoint["url"], verify=ssl.create_default_context(cafile=endpoint["ca_file"]),
                        headers=headers, timeout=30)


def job_body(ws: str) -> dict:
    return {"properties": {"cluster": {"id": f"{ws}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/out",
                           "customToolkitSettings": {"commandLine": "true"}}}


def tampered(token: str) -> str:
    """The token with one claim changed and the signature kept: the signature no longer matches."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["name"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def assign(http: httpx.Client, scope: str, principal_id: str, role: rbac.RoleDefinition) -> dict:
    sub = rbac.subscription_of(scope)
    body = {"properties": {"roleDefinitionId": rbac.role_definition_id(str(sub), role), "principalId": principal_id,
                           "principalType": "User"}}
    r = http.put(f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?{AUTHZ_API}", json=body)
    assert r.status_code == 201, r.text
    return r.json()


@dataclass
class World:
    endpoint: dict[str, str]
    endpoint_storage: str  # the service's storage connection string
    issuer: Issuer
    sub: str
    rg: str
    a: str  # workspace A's id
    b: str  # workspace B's id
    tokens: dict[str, str] = field(default_factory=dict)  # who -> token
    reader_assignment: str = ""  # the name of the reader's role assignment on A

    def oid(self, name: str) -> str:
        return str(self.issuer_claims(name)["oid"])

    def issuer_claims(self, name: str) -> dict:
        return self.issuer_claims_of(self.tokens[name])

    @staticmethod
    def issuer_claims_of(token: str) -> dict:
        return jwt.decode(token, options={"verify_signature": False})

    def as_(self, who: str | None) -> httpx.Client:
        return client(self.endpoint, self.tokens[who] if who else None)


@pytest.fixture(scope="session")
def world(api_endpoint: dict[str, str], api_issuer: Issuer, storage_conn: str) -> Iterator[World]:
    run = uuid.uuid4().hex[:6]
    sub, rg = api_endpoint["subscription_id"], f"authz-{run}"
    base = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.BatchAI/workspaces"
    w = World(api_endpoint, storage_conn, api_issuer, sub, rg, f"{base}/a-{run}", f"{base}/b-{run}")
    w.tokens["service-owner"] = api_endpoint["token"]
    for who in (*ROLES_ON_A, "other-owner", "nobody"):
        w.tokens[who] = principal_token(api_issuer, f"{who}-{run}")
    with w.as_("service-owner") as owner:
        for ws in (w.a, w.b):
            assert owner.put(f"{ws}?{API}", json={"location": "eastus"}).status_code == 200
        assert owner.put(f"{w.a}/clusters/c?{API}", json=CLUSTER).status_code == 200
        assert owner.put(f"{w.a}/experiments/e?{API}", json={}).status_code == 200
        assert owner.put(f"{w.a}/experiments/e/jobs/j?{API}", json=job_body(w.a)).status_code == 200
        assert owner.put(f"{w.a}/fileServers/fs?{API}", json=FILESERVER).status_code == 200
        assert owner.put(f"{w.b}/experiments/e?{API}", json={}).status_code == 200
        for who, role in ROLES_ON_A.items():
            name = assign(owner, w.a, w.oid(who), role)["name"]
            w.reader_assignment = w.reader_assignment or name
        assign(owner, w.b, w.oid("other-owner"), rbac.OWNER)
    yield w
