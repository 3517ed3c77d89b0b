"""Every route of the API x every kind of caller: no token, a bad signature, an expired token, a token of
another issuer, and valid tokens of a reader, a job submitter, a contributor and an owner of workspace A,
an owner of workspace B, a principal with no role, and the service's configured owner.

Requests that would change A are made harmless without weakening the check: writes carry a wrong
If-Match (412 once authorized) or an invalid body (400), actions name a job that does not exist (404).
A status other than 401/403 therefore proves the caller got past authorization; 403 must name the
route's action and scope as ARM does.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from functions.api.access import RULES
from shared.domain import rbac
from shared.emulator.issuer import Issuer
from tests.api.conftest import API
from tests.authz.conftest import AUTHZ_API, CLUSTER, FILESERVER, World, tampered

ALL_A = "RSCO"  # reader, submitter, contributor, owner of A
WRONG = {"If-Match": '"0x8D0000000000000"'}
SYSTEM = "service-owner"
WORKSPACES = "/providers/Microsoft.BatchAI/workspaces"
A_ROLES = {"R": "reader", "S": "submitter", "C": "contributor", "O": "owner"}


@dataclass(frozen=True)
class Case:
    method: str
    template: str  # the route, as registered
    path: str  # under A (or its subscription / resource group)
    allowed: str  # which of A's roles pass ("*": every authenticated caller; "op": the operation's starter)
    status: int  # the answer once authorized
    body: Any = None
    headers: dict[str, str] | None = None
    query: str = API


def cases(w: World, op: str) -> list[Case]:
    sub = f"/subscriptions/{w.sub}"
    rg = f"{sub}/resourceGroups/{w.rg}"
    a, job, nojob = w.a, f"{w.a}/experiments/e/jobs/j", f"{w.a}/experiments/e/jobs/nojob"
    ra_a = f"{a}/providers/Microsoft.Authorization/roleAssignments"
    rds = f"{a}/providers/Microsoft.Authorization/roleDefinitions"
    loc = f"{sub}/providers/Microsoft.BatchAI/locations/eastus"
    t = {"SUB": "/subscriptions/{subscriptionId}"}  # route templates, as the routes register them
    t["RG"] = t["SUB"] + "/resourceGroups/{resourceGroupName}"
    t["WS"] = t["RG"] + "/providers/Microsoft.BatchAI/workspaces/{workspaceName}"
    t["EXP"], t["C"] = t["WS"] + "/experiments/{experimentName}", t["WS"] + "/clusters/{clusterName}"
    t["FS"], t["JOB"] = t["WS"] + "/fileServers/{fileServerName}", t["EXP"] + "/jobs/{jobName}"
    t["SWEEP"] = t["EXP"] + "/sweeps/{sweepName}"
    t["LOC"] = t["SUB"] + "/providers/Microsoft.BatchAI/locations/{location}"
    t["RA"] = "/{scope:path}/providers/Microsoft.Authorization/roleAssignments"
    t["RD"] = "/{scope:path}/providers/Microsoft.Authorization/roleDefinitions"
    return [
        Case("GET", "/providers/Microsoft.BatchAI/operations", "/providers/Microsoft.BatchAI/operations", "*", 200),
        Case("GET", t["LOC"] + "/usages", f"{loc}/usages", "", 200),
        Case("GET", t["LOC"] + "/operationresults/{operationId}", f"{loc}/operationresults/{op}", "op", 200),
        Case("GET", t["LOC"] + "/operationstatuses/{operationId}", f"{loc}/operationstatuses/{op}", "op", 200),
        Case("GET", t["SUB"] + WORKSPACES, sub + WORKSPACES, "*", 200),
        Case("GET", t["RG"] + WORKSPACES, rg + WORKSPACES, "*", 200),
        Case("PUT", t["WS"], a, "CO", 412, {"location": "eastus"}, WRONG),
        Case("PATCH", t["WS"], a, "CO", 412, {"tags": {}}, WRONG),
        Case("GET", t["WS"], a, ALL_A, 200),
        Case("DELETE", t["WS"], a, "CO", 412, None, WRONG),
        Case("GET", t["WS"] + "/experiments", f"{a}/experiments", ALL_A, 200),
        Case("PUT", t["EXP"], f"{a}/experiments/e", "CO", 412, {}, WRONG),
        Case("GET", t["EXP"], f"{a}/experiments/e", ALL_A, 200),
        Case("DELETE", t["EXP"], f"{a}/experiments/e", "CO", 412, None, WRONG),
        Case("GET", t["EXP"] + "/jobs", f"{a}/experiments/e/jobs", ALL_A, 200),
        Case("PUT", t["JOB"], f"{a}/experiments/e/jobs/new", "SCO", 400, {"properties": {}}),
        Case("GET", t["JOB"], job, ALL_A, 200),
        Case("DELETE", t["JOB"], job, "CO", 412, None, WRONG),
        Case("POST", t["JOB"] + "/terminate", f"{nojob}/terminate", "SCO", 404),
        Case("POST", t["JOB"] + "/listOutputFiles", f"{nojob}/listOutputFiles", "SCO", 404),
        Case("GET", t["JOB"] + "/listOutputFiles", f"{nojob}/listOutputFiles", "SCO", 404),
        Case("POST", t["JOB"] + "/listRemoteLoginInformation", f"{nojob}/listRemoteLoginInformation", "CO", 404),
        Case("GET", t["JOB"] + "/metrics", f"{job}/metrics", ALL_A, 200),
        Case("GET", t["EXP"] + "/sweeps", f"{a}/experiments/e/sweeps", ALL_A, 200),
        Case("PUT", t["SWEEP"], f"{a}/experiments/e/sweeps/new", "SCO", 400, {"properties": {}}),
        Case("GET", t["SWEEP"], f"{a}/experiments/e/sweeps/nosweep", ALL_A, 404),
        Case("DELETE", t["SWEEP"], f"{a}/experiments/e/sweeps/nosweep", "CO", 204),
        Case("POST", t["SWEEP"] + "/cancel", f"{a}/experiments/e/sweeps/nosweep/cancel", "SCO", 404),
        Case("GET", t["WS"] + "/clusters", f"{a}/clusters", ALL_A, 200),
        Case("PUT", t["C"], f"{a}/clusters/c", "CO", 412, CLUSTER, WRONG),
        Case("PATCH", t["C"], f"{a}/clusters/c", "CO", 412, {}, WRONG),
        Case("GET", t["C"], f"{a}/clusters/c", ALL_A, 200),
        Case("DELETE", t["C"], f"{a}/clusters/c", "CO", 412, None, WRONG),
        Case("POST", t["C"] + "/listRemoteLoginInformation", f"{a}/clusters/c/listRemoteLoginInformation", "CO", 200),
        Case("POST", t["C"] + "/nodes/{nodeId}/exec", f"{a}/clusters/c/nodes/nonode/exec", "CO", 404,
             {"command": "id"}),
        Case("GET", t["C"] + "/nodes/{nodeId}/execs/{execId}", f"{a}/clusters/c/nodes/nonode/execs/x", "CO", 404),
        Case("POST", t["JOB"] + "/nodes/{nodeId}/exec", f"{nojob}/nodes/nonode/exec", "CO", 404, {"command": "id"}),
        Case("GET", t["JOB"] + "/nodes/{nodeId}/execs/{execId}", f"{nojob}/nodes/nonode/execs/x", "CO", 404),
        Case("POST", t["C"] + "/listNodeSetupFiles", f"{a}/clusters/c/listNodeSetupFiles", "CO", 200),
        Case("GET", t["C"] + "/listNodeSetupFiles", f"{a}/clusters/c/listNodeSetupFiles", "CO", 200),
        Case("POST", t["C"] + "/joinTokens", f"{a}/clusters/c/joinTokens", "CO", 400, {"expiresInHours": 0}),
        Case("GET", t["C"] + "/joinTokens", f"{a}/clusters/c/joinTokens", ALL_A, 200),
        Case("DELETE", t["C"] + "/joinTokens/{tokenName}", f"{a}/clusters/c/joinTokens/notoken", "CO", 204),
        Case("GET", t["WS"] + "/fileServers", f"{a}/fileServers", "RCO", 200),
        Case("PUT", t["FS"], f"{a}/fileServers/fs", "CO", 412, FILESERVER, WRONG),
        Case("GET", t["FS"], f"{a}/fileServers/fs", "RCO", 200),
        Case("DELETE", t["FS"], f"{a}/fileServers/fs", "CO", 412, None, WRONG),
        Case("GET", t["WS"] + "/batchScoringRuns", f"{a}/batchScoringRuns", "RCO", 200),
        Case("GET", t["WS"] + "/batchScoringRuns/{runName}", f"{a}/batchScoringRuns/norun", "RCO", 404),
        Case("GET", t["RG"] + "/providers/Microsoft.BatchAI/rejectedSubmissions",
             f"{rg}/providers/Microsoft.BatchAI/rejectedSubmissions", "*", 200),
        Case("PUT", t["RA"] + "/{roleAssignmentName}", f"{ra_a}/{uuid.uuid4()}", "O", 400, {"properties": {}},
             query=AUTHZ_API),
        Case("GET", t["RA"] + "/{roleAssignmentName}", f"{ra_a}/{w.reader_assignment}", "RCO", 200, query=AUTHZ_API),
        Case("DELETE", t["RA"] + "/{roleAssignmentName}", f"{ra_a}/{uuid.uuid4()}", "O", 204, query=AUTHZ_API),
        Case("GET", t["RA"], ra_a, "*", 200, query=AUTHZ_API),
        Case("GET", t["RD"], rds, "RCO", 200, query=AUTHZ_API),
        Case("GET", t["RD"] + "/{roleDefinitionId}", f"{rds}/{rbac.READER.guid}", "RCO", 200, query=AUTHZ_API),
    ]


@pytest.fixture(scope="module")
def operation(world: World) -> str:
    """An operation the owner of A started (deleting an experiment of A)."""
    with world.as_("owner") as owner:
        assert owner.put(f"{world.a}/experiments/gone?{API}", json={}).status_code == 200
        r = owner.delete(f"{world.a}/experiments/gone?{API}")
        assert r.status_code == 202, r.text
        return r.headers["Azure-AsyncOperation"].split("?")[0].rsplit("/", 1)[-1]


def refused_tokens(w: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str | None, str]]:
    owner_claims = w.issuer_claims(SYSTEM)
    claims = {k: v for k, v in owner_claims.items() if k not in ("iss", "iat", "nbf", "exp")}
    other = Issuer.load_or_create(tmp_path_factory.mktemp("other-issuer"),
                                  "https://127.0.0.1:9/11111111-2222-3333-4444-555555555555/v2.0",
                                  "11111111-2222-3333-4444-555555555555")
    return {
        "no token": (None, "AuthenticationFailed"),
        "bad signature": (tampered(w.tokens[SYSTEM]), "InvalidAuthenticationToken"),
        "expired": (w.issuer.sign(claims, 600, now=time.time() - 7200), "ExpiredAuthenticationToken"),
        "other issuer": (other.sign(claims), "InvalidAuthenticationTokenTenant"),
    }


def test_every_route_is_in_the_matrix(world: World, operation: str) -> None:
    covered = {(c.method, c.template) for c in cases(world, operation)}
    assert covered == set(RULES), set(RULES) ^ covered


@pytest.mark.parametrize("who", ["no token", "bad signature", "expired", "other issuer"])
def test_refused_tokens_get_401_on_every_route(world: World, operation: str, who: str,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    token, code = refused_tokens(world, tmp_path_factory)[who]
    wrong = []
    with world.as_(None) as anonymous:
        for c in cases(world, operation):
            headers = {**(c.headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
            r = anonymous.request(c.method, f"{c.path}?{c.query}", json=c.body, headers=headers)
            if r.status_code != 401 or r.json()["error"]["code"] != code or \
                    not r.headers.get("WWW-Authenticate", "").startswith("Bearer "):
                wrong.append(f"{c.method} {c.path}: {r.status_code} {r.text[:200]}")
    assert not wrong, "\n".join(wrong)


def expected(case: Case, who: str) -> bool:
    if case.allowed == "op":  # bound to its starter: not even the service's owner reads another's operation
        return who == "owner"
    if who == SYSTEM or case.allowed == "*":
        return True
    return any(A_ROLES[letter] == who for letter in case.allowed)


@pytest.mark.parametrize("who", [*A_ROLES.values(), "other-owner", "nobody", SYSTEM])
def test_each_role_passes_exactly_its_routes(world: World, operation: str, who: str) -> None:
    wrong = []
    with world.as_(who) as caller:
        for c in cases(world, operation):
            r = caller.request(c.method, f"{c.path}?{c.query}", json=c.body, headers=c.headers)
            rule = RULES[(c.method, c.template)]
            if expected(c, who):
                ok = r.status_code == c.status
            elif rule.caller_bound:
                ok = r.status_code == 404 and r.json()["error"]["code"] == "OperationNotFound"
            else:
                error = r.json().get("error", {}) if r.status_code == 403 else {}
                ok = error.get("code") == "AuthorizationFailed" and f"action '{rule.action}'" in error["message"] \
                    and f"object id '{world.oid(who)}'" in error["message"] and "over scope '/" in error["message"]
            if not ok:
                wrong.append(f"{c.method} {c.path}: {r.status_code} {r.text[:300]}")
    assert not wrong, "\n".join(wrong)
