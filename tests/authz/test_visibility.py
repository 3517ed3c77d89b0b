"""What callers see and reach: lists filtered to what they may read, roles reaching down from their scope
(and through groups), revocation taking effect at once, and no one granting more than they hold."""

from __future__ import annotations

import uuid

import httpx

from shared.adapters import storage
from shared.domain import rbac
from shared.domain.principals import GROUP, local_object_id
from shared.localstack.token import principal_token
from tests.api.conftest import API
from tests.authz.conftest import AUTHZ_API, World, assign, client, job_body

WORKSPACES = "/providers/Microsoft.BatchAI/workspaces"
ASSIGNMENTS = "/providers/Microsoft.Authorization/roleAssignments"


def names(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["value"]}


def forbidden(r: httpx.Response, action: str, scope: str) -> None:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert f"perform action '{action}' over scope '{scope}'" in error["message"], error["message"]


def test_workspace_lists_show_only_what_each_caller_may_read(world: World) -> None:
    sub, rg = f"/subscriptions/{world.sub}", f"/subscriptions/{world.sub}/resourceGroups/{world.rg}"
    mine = {world.a.lower(), world.b.lower()}
    for who, visible in (("reader", {world.a}), ("submitter", {world.a}), ("other-owner", {world.b}),
                         ("nobody", set()), ("service-owner", {world.a, world.b})):
        with world.as_(who) as caller:
            for listing in (f"{sub}{WORKSPACES}?{API}", f"{rg}{WORKSPACES}?{API}&maxresults=1"):
                seen: set[str] = set()
                url: str | None = listing
                while url:  # every page, following nextLink
                    r = caller.get(url)
                    seen |= {i.lower() for i in names(r) if i.lower() in mine}
                    url = r.json().get("nextLink")
                assert seen == {v.lower() for v in visible}, (who, listing, seen)


def test_a_reader_of_a_reads_a_but_nothing_of_b(world: World) -> None:
    with world.as_("reader") as reader:
        assert reader.get(f"{world.a}?{API}").status_code == 200
        assert names(reader.get(f"{world.a}/experiments?{API}")) == {f"{world.a}/experiments/e"}
        forbidden(reader.put(f"{world.a}/experiments/e/jobs/mine?{API}", json=job_body(world.a)),
                  rbac.JOBS_WRITE, f"{world.a}/experiments/e/jobs/mine")
        forbidden(reader.get(f"{world.b}?{API}"), rbac.WORKSPACES_READ, world.b)
        forbidden(reader.get(f"{world.b}/experiments?{API}"), rbac.EXPERIMENTS_READ, world.b)
        forbidden(reader.get(f"{world.b}/experiments/nothing?{API}"), rbac.EXPERIMENTS_READ,
                  f"{world.b}/experiments/nothing")  # refused before anyone looks: existence is not revealed
        listed = [a["properties"]["scope"] for a in reader.get(
            f"/subscriptions/{world.sub}{ASSIGNMENTS}?{AUTHZ_API}").json()["value"]]
        assert listed and all(s.lower().startswith(world.a.lower()) for s in listed), listed


def test_refused_submissions_are_listed_to_readers_of_their_workspace(world: World) -> None:
    table = storage.table(world.endpoint_storage, storage.T_REJECTED)
    pk = f"{world.sub}|{world.rg}".lower()
    row = uuid.uuid4().hex
    for ws in (world.a, world.b):
        table.create_entity({"PartitionKey": pk, "RowKey": f"{row}-{ws[-8:]}", "code": "InvalidRequestContent",
                             "message": "refused", "workspace": ws.rsplit("/", 1)[-1]})
    url = f"/subscriptions/{world.sub}/resourceGroups/{world.rg}/providers/Microsoft.BatchAI/rejectedSubmissions?{API}"
    for who, seen in (("reader", world.a), ("other-owner", world.b)):
        with world.as_(who) as caller:
            rows = [i["properties"]["workspace"] for i in caller.get(url).json()["value"]]
        assert rows == [seen.rsplit("/", 1)[-1]], (who, rows)
    with world.as_("submitter") as caller:  # the job submitter's role does not read them
        assert caller.get(url).json()["value"] == []


def test_roles_reach_down_from_their_scope_and_through_groups(world: World) -> None:
    run = uuid.uuid4().hex[:6]
    rg_scope = f"/subscriptions/{world.sub}/resourceGroups/{world.rg}"
    group = f"readers-{run}"
    member = principal_token(world.issuer, f"member-{run}", groups=[group])
    outsider = principal_token(world.issuer, f"outsider-{run}", groups=[f"others-{run}"])
    job_only = principal_token(world.issuer, f"job-only-{run}")
    with world.as_("service-owner") as owner:
        assign(owner, rg_scope, local_object_id(world.issuer.tenant_id, GROUP, group), rbac.READER)
        oid = world.issuer_claims_of(job_only)["oid"]
        assign(owner, f"{world.a}/experiments/e/jobs/j", oid, rbac.READER)
    with client(world.endpoint, member) as caller:
        assert caller.get(f"{world.a}?{API}").status_code == 200 and caller.get(f"{world.b}?{API}").status_code == 200
    with client(world.endpoint, outsider) as caller:
        assert caller.get(f"{world.a}?{API}").status_code == 403
    with client(world.endpoint, job_only) as caller:
        assert caller.get(f"{world.a}/experiments/e/jobs/j?{API}").status_code == 200
        forbidden(caller.get(f"{world.a}/experiments/e?{API}"), rbac.EXPERIMENTS_READ, f"{world.a}/experiments/e")


def test_revoking_a_role_takes_effect_on_the_next_request(world: World) -> None:
    token = principal_token(world.issuer, f"temporary-{uuid.uuid4().hex[:6]}")
    with world.as_("owner") as owner, client(world.endpoint, token) as temporary:
        assignment = assign(owner, world.a, world.issuer_claims_of(token)["oid"], rbac.READER)
        assert temporary.get(f"{world.a}?{API}").status_code == 200
        assert owner.delete(f"{assignment['id']}?{AUTHZ_API}").status_code == 200
        forbidden(temporary.get(f"{world.a}?{API}"), rbac.WORKSPACES_READ, world.a)
        assert owner.delete(f"{assignment['id']}?{AUTHZ_API}").status_code == 204


def test_no_one_grants_beyond_what_they_hold(world: World) -> None:
    body = {"properties": {"roleDefinitionId": rbac.role_definition_id(world.sub, rbac.OWNER),
                           "principalId": world.oid("reader")}}
    rg_scope = f"/subscriptions/{world.sub}/resourceGroups/{world.rg}"
    for who, scope in (("contributor", world.a), ("owner", world.b), ("owner", rg_scope), ("reader", world.a)):
        name = uuid.uuid4()
        with world.as_(who) as caller:
            forbidden(caller.put(f"{scope}{ASSIGNMENTS}/{name}?{AUTHZ_API}", json=body), rbac.ROLE_ASSIGNMENTS_WRITE,
                      f"{scope}{ASSIGNMENTS}/{name}")
    with world.as_("owner") as owner:  # an owner of A makes someone an owner of A: within what it holds
        created = owner.put(f"{world.a}{ASSIGNMENTS}/{uuid.uuid4()}?{AUTHZ_API}", json=body)
        assert created.status_code == 201, created.text
        assert owner.delete(f"{created.json()['id']}?{AUTHZ_API}").status_code == 200


def test_operations_answer_only_their_caller(world: World) -> None:
    with world.as_("contributor") as contributor:
        gone = f"{world.a}/experiments/op-{uuid.uuid4().hex[:6]}"
        assert contributor.put(f"{gone}?{API}", json={}).status_code == 200
        started = contributor.delete(f"{gone}?{API}")
        assert started.status_code == 202
        poll = started.headers["Azure-AsyncOperation"]
        assert contributor.get(poll).json()["status"] in ("InProgress", "Succeeded")
    for who in ("owner", "service-owner", "reader"):
        with world.as_(who) as other:
            r = other.get(poll)
            assert r.status_code == 404 and r.json()["error"]["code"] == "OperationNotFound", (who, r.text)
