"""A workspace for the trigger tests, made through the API by the service's owner: an experiment, a
cluster without nodes, two registered data containers, and principals with tokens of the session's
issuer: a job submitter and a reader of it, an owner of another workspace, and a stranger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from shared.domain import rbac
from shared.domain.keys import WorkspaceRef
from shared.emulator.issuer import Issuer
from shared.localstack.token import principal_token
from tests.authz.conftest import assign, client
from tests.ingress.conftest import API, cluster_body


@dataclass
class World:
    endpoint: dict[str, str]
    issuer: Issuer
    ws: WorkspaceRef
    other: WorkspaceRef
    inputs: str
    outputs: str
    tokens: dict[str, str] = field(default_factory=dict)

    def bearer(self, who: str) -> str:
        return f"Bearer {self.tokens[who]}"

    def cluster_id(self) -> str:
        return f"{self.ws.arm_id}/clusters/c"


def make_world(endpoint: dict[str, str], issuer: Issuer) -> World:
    run = uuid.uuid4().hex[:8]
    sub, rg = endpoint["subscription_id"], f"ingress-{run}"
    w = World(endpoint, issuer, WorkspaceRef(sub, rg, "w"), WorkspaceRef(sub, rg, "other"), f"in-{run}",
              f"out-{run}")
    w.tokens["owner"] = endpoint["token"]
    for who in ("submitter", "reader", "other-owner", "stranger"):
        w.tokens[who] = principal_token(issuer, f"{who}-{run}")
    with client(endpoint, endpoint["token"]) as owner:
        ws = w.ws.arm_id
        r = owner.put(f"{ws}?{API_QS}", json={"location": "local",
                                              "properties": {"dataContainers": [w.inputs, w.outputs]}})
        assert r.status_code == 200, r.text
        assert owner.put(f"{w.other.arm_id}?{API_QS}", json={"location": "local"}).status_code == 200
        assert owner.put(f"{ws}/experiments/e?{API_QS}", json={}).status_code == 200
        assert owner.put(f"{ws}/clusters/c?{API_QS}", json=cluster_body(0)).status_code == 200
        for who, role, scope in (("submitter", rbac.JOB_SUBMITTER, ws), ("reader", rbac.READER, ws),
                                 ("other-owner", rbac.OWNER, w.other.arm_id)):
            assign(owner, scope, _oid(w.tokens[who]), role)
    return w


def _oid(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["oid"])


API_QS = "&".join(f"{k}={v}" for k, v in API.items())
