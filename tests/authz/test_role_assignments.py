"""Role assignments: the service against real Azurite (ARM's create, duplicate and update rules, delete,
the list filters, racing creators), and the API driven by the official azure-mgmt-authorization client."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.batchai import BatchAI, models

from shared.config import Settings
from shared.domain import principals, rbac
from shared.domain.errors import ApiError
from shared.services import role_assignments as ra
from tests.api.conftest import StaticToken
from tests.authz.conftest import World, job_body

CALLER = principals.Principal("00000000-0000-4000-8000-0000000000aa", "t", "tester")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def body(role: rbac.RoleDefinition, principal: str, kind: str = "User") -> dict[str, Any]:
    return {"properties": {"roleDefinitionId": rbac.role_definition_id("s", role), "principalId": principal,
                           "principalType": kind}}


@pytest.fixture()
def scope(storage_conn: str) -> str:
    sub = str(uuid.uuid4())  # a subscription of its own: lists see only this test's assignments
    return f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/ws"


def refused(call: Any, status: int, code: str) -> None:
    with pytest.raises(ApiError) as e:
        call()
    assert (e.value.status, e.value.code) == (status, code), e.value


def test_create_get_delete_as_arm_does(scope: str) -> None:
    conf, name, who = Settings.from_env(), str(uuid.uuid4()), str(uuid.uuid4())
    created, new = ra.create(conf, scope, name, body(rbac.READER, who), CALLER, NOW)
    assert new and created["id"] == f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
    sub = scope.split("/")[2]
    assert created["properties"].items() >= {
        "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                            f"{rbac.READER.guid}",
        "principalId": who, "principalType": "User", "scope": scope, "createdBy": CALLER.object_id,
        "createdOn": "2026-01-02T03:04:05.000Z"}.items()
    assert ra.get(conf, scope, name) == created
    assert ra.create(conf, scope, name, body(rbac.READER, who), CALLER, NOW) == (created, False)  # idempotent PUT
    refused(lambda: ra.create(conf, scope, name, body(rbac.OWNER, who), CALLER, NOW), 409,
            "RoleAssignmentUpdateNotPermitted")
    refused(lambda: ra.create(conf, scope, str(uuid.uuid4()), body(rbac.READER, who), CALLER, NOW), 409,
            "RoleAssignmentExists")
    refused(lambda: ra.get(conf, scope.rsplit("/", 1)[0] + "/other", name), 404, "RoleAssignmentNotFound")
    assert ra.delete(conf, scope, name) == created
    assert ra.delete(conf, scope, name) is None
    refused(lambda: ra.get(conf, scope, name), 404, "RoleAssignmentNotFound")
    again, new = ra.create(conf, scope, str(uuid.uuid4()), body(rbac.READER, who), CALLER, NOW)
    assert new and again["name"] != name  # the triple is free again


@pytest.mark.parametrize(("name", "payload", "code"), [
    ("not-a-guid", body(rbac.READER, str(uuid.uuid4())), "InvalidRoleAssignmentId"),
    (None, {"properties": {"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/"
                                               "00000000-0000-0000-0000-000000000000",
                           "principalId": str(uuid.uuid4())}}, "RoleDefinitionDoesNotExist"),
    (None, body(rbac.READER, "alice"), "InvalidPrincipalId"),
    (None, body(rbac.READER, str(uuid.uuid4()), "Robot"), "InvalidPrincipalType"),
    (None, [1], "InvalidRequestContent"),
])
def test_invalid_requests(scope: str, name: str | None, payload: Any, code: str) -> None:
    refused(lambda: ra.create(Settings.from_env(), scope, name or str(uuid.uuid4()), payload, CALLER, NOW), 400, code)


def test_invalid_scopes(scope: str) -> None:
    for wrong in (scope + "/jobs/j", "/subscriptions/x/resourceGroups/..", "/providers/Microsoft.BatchAI"):
        refused(lambda w=wrong: ra.create(Settings.from_env(), w, str(uuid.uuid4()),
                                          body(rbac.READER, str(uuid.uuid4())), CALLER, NOW), 400, "InvalidScope")


def test_racing_creators_of_one_triple_make_one_assignment(scope: str) -> None:
    conf, who = Settings.from_env(), str(uuid.uuid4())

    def attempt(_: int) -> str:
        try:
            ra.create(conf, scope, str(uuid.uuid4()), body(rbac.CONTRIBUTOR, who), CALLER, NOW)
            return "created"
        except ApiError as e:
            return e.code

    with ThreadPoolExecutor(6) as pool:
        outcomes = sorted(pool.map(attempt, range(6)))
    assert outcomes == ["RoleAssignmentExists"] * 5 + ["created"]
    assert len(ra.list_at(conf, scope, f"principalId eq '{who}'")) == 1


def test_list_filters(scope: str) -> None:
    conf = Settings.from_env()
    sub = "/".join(scope.split("/")[:3])
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    made = {}
    for key, where, who in (("sub", sub, alice), ("ws", scope, bob), ("job", f"{scope}/experiments/e/jobs/j", alice),
                            ("other", sub + "/resourceGroups/other", bob)):
        made[key] = ra.create(conf, where, str(uuid.uuid4()), body(rbac.READER, who), CALLER, NOW)[0]["name"]

    def listed(at: str, query: str | None) -> set[str]:
        found = {a.name for a in ra.list_at(conf, at, query)}
        return {k for k, v in made.items() if v in found}

    assert listed(scope, None) == {"sub", "ws", "job"}  # above, at and below; not beside
    assert listed(scope, "atScope()") == {"sub", "ws"}
    assert listed(scope, f"principalId eq '{alice}'") == {"sub", "job"}
    assert listed(scope, f"atScope() and principalId eq '{alice.upper()}'") == {"sub"}
    assert listed(sub, None) == set(made)
    refused(lambda: ra.list_at(conf, scope, "roleName eq 'Reader'"), 400, "InvalidFilter")


@pytest.fixture()
def auth_client(world: World) -> AuthorizationManagementClient:
    return AuthorizationManagementClient(StaticToken(world.tokens["service-owner"]), world.sub,
                                         base_url=world.endpoint["url"], connection_verify=world.endpoint["ca_file"])


def test_the_official_authorization_client(world: World, auth_client: AuthorizationManagementClient) -> None:
    reader = [d for d in auth_client.role_definitions.list(world.a, filter="roleName eq 'Reader'")]
    assert [(d.role_name, d.name, d.role_type) for d in reader] == [("Reader", rbac.READER.guid, "BuiltInRole")]
    assert reader[0].permissions[0].actions == ["*/read"]
    submitter = auth_client.role_definitions.get(world.a, rbac.JOB_SUBMITTER.guid)
    assert submitter.role_name == "BatchAI Job Submitter" and rbac.JOBS_WRITE in submitter.permissions[0].actions

    who, name = str(uuid.uuid4()), str(uuid.uuid4())
    created = auth_client.role_assignments.create(world.a, name, RoleAssignmentCreateParameters(
        role_definition_id=reader[0].id, principal_id=who, principal_type="Group", description="readers of A"))
    assert (created.name, created.scope, created.principal_id, created.principal_type, created.role_definition_id) \
        == (name, world.a, who, "Group", reader[0].id)
    assert created.description == "readers of A" and created.created_on is not None
    assert auth_client.role_assignments.get(world.a, name).id == created.id
    assert auth_client.role_assignments.get_by_id(created.id).principal_id == who
    at_a = [a.name for a in auth_client.role_assignments.list_for_scope(world.a, filter="atScope()")]
    assert name in at_a and world.reader_assignment in at_a
    mine = [a.name for a in auth_client.role_assignments.list_for_subscription(filter=f"principalId eq '{who}'")]
    assert mine == [name]
    assert name in [a.name for a in auth_client.role_assignments.list_for_resource_group(world.rg)]
    assert auth_client.role_assignments.delete(world.a, name).name == name
    with pytest.raises(ResourceNotFoundError):
        auth_client.role_assignments.get(world.a, name)
    assert auth_client.role_assignments.delete(world.a, name) is None


def test_the_official_batchai_client_per_role(world: World) -> None:
    def sdk(who: str) -> BatchAI:
        return BatchAI(StaticToken(world.tokens[who]), world.sub, base_url=world.endpoint["url"],
                       connection_verify=world.endpoint["ca_file"], polling_interval=0.2)

    ws = world.a.rsplit("/", 1)[-1]
    assert sdk("reader").workspaces.get(world.rg, ws).name == ws
    params = models.JobCreateParameters.from_dict(job_body(world.a)["properties"])
    with pytest.raises(HttpResponseError) as refused_job:
        sdk("reader").jobs.begin_create(world.rg, ws, "e", "by-reader", params).result()
    assert refused_job.value.status_code == 403 and refused_job.value.error.code == "AuthorizationFailed"
    assert rbac.JOBS_WRITE in refused_job.value.error.message
    job = sdk("submitter").jobs.begin_create(world.rg, ws, "e", f"by-submitter-{uuid.uuid4().hex[:4]}", params).result()
    assert job.provisioning_state == "succeeded"
    with pytest.raises(HttpResponseError) as refused_delete:
        sdk("submitter").jobs.begin_delete(world.rg, ws, "e", job.name).result()
    assert refused_delete.value.status_code == 403 and rbac.JOBS_DELETE in refused_delete.value.error.message
    sdk("contributor").jobs.begin_delete(world.rg, ws, "e", job.name).result()
