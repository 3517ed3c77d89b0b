"""Services moved onto the storage port keep their rules over both implementations: data container
claims, role assignments' pairs of rows, operation callers, job link rows and their orphan age."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared import ports
from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.domain import principals, rbac
from shared.domain.errors import ApiError
from shared.domain.keys import WorkspaceRef
from shared.domain.resources import new_workspace
from shared.ports.rows import Query, StaleEtag
from shared.services import authorization, data_containers, job_links, role_assignments

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture()
def settings(port_conn: str, storage_conn: str) -> Settings:
    return dataclasses.replace(Settings.from_env(), storage_connection_string=port_conn)


def _guid() -> str:
    return str(uuid.uuid4())


def _principal(object_id: str) -> principals.Principal:
    return principals.from_claims({"oid": object_id, "tid": _guid(), "sub": object_id, "name": "someone"})


def _workspace(settings: Settings, sub: str, name: str, containers: list[str]) -> WorkspaceRef:
    ref = WorkspaceRef(sub, "rg", name)
    data = new_workspace(ref, "local", {}, NOW)
    data["properties"][data_containers.FIELD] = containers
    ResourceStore(settings.storage_connection_string, storage.T_WORKSPACES).insert(ref.pk, ref.workspace.lower(), data)
    return ref


def test_a_data_container_is_claimed_by_one_workspace_and_taken_over_once_unlisted(settings: Settings) -> None:
    sub, name = _guid(), f"c-{uuid.uuid4().hex[:12]}"
    a = _workspace(settings, sub, "a", [name])
    b = _workspace(settings, sub, "b", [])
    data_containers.claim(settings, a, [name])
    data_containers.claim(settings, a, [name])  # idempotent
    assert data_containers.registered(settings, a, name)
    with pytest.raises(ApiError) as refused:
        data_containers.claim(settings, b, [name])
    assert refused.value.code == "DataContainerInUse"
    data_containers.release(settings, b, [name])  # not b's: stays a's
    assert data_containers.registered(settings, a, name)
    gone = WorkspaceRef(sub, "rg", "gone")  # a claim of a workspace that is not there may be taken
    data_containers.release(settings, a, [name])
    data_containers.claim(settings, gone, [name])
    data_containers.claim(settings, a, [name])
    assert data_containers.registered(settings, a, name) and not data_containers.registered(settings, b, name)


def test_a_role_assignment_is_created_once_per_triple_and_deleted_with_its_key(settings: Settings) -> None:
    sub, who, caller = _guid(), _guid(), _principal(_guid())
    scope = f"/subscriptions/{sub}/resourceGroups/rg"
    body = {"properties": {"roleDefinitionId": rbac.role_definition_id(sub, rbac.READER), "principalId": who}}
    name = _guid()
    created, new = role_assignments.create(settings, scope, name, body, caller, NOW)
    assert new and created["name"] == name
    assert role_assignments.create(settings, scope, name, body, caller, NOW)[1] is False  # as asked: 200
    with pytest.raises(ApiError) as twice:
        role_assignments.create(settings, scope, _guid(), body, caller, NOW)
    assert twice.value.code == "RoleAssignmentExists"
    assert [a.name for a in role_assignments.in_subscription(settings, sub)] == [name]
    assert role_assignments.delete(settings, scope, name)["name"] == name
    assert role_assignments.delete(settings, scope, name) is None
    table = ports.of(settings.storage_connection_string).table(storage.T_ROLE_ASSIGNMENTS)
    assert list(table.query(Query(pk=sub))) == []  # the key row went with it
    assert role_assignments.create(settings, scope, _guid(), body, caller, NOW)[1]  # the triple is free again


def test_an_operation_is_bound_to_who_started_it(settings: Settings) -> None:
    op, owner, other = _guid(), _principal(_guid()), _principal(_guid())
    assert authorization.operation_caller(settings, op) is None
    authorization.bind_operation(settings, op, owner)
    authorization.bind_operation(settings, op, owner)  # idempotent for the same principal
    assert authorization.operation_caller(settings, op) == owner.object_id
    with pytest.raises(StaleEtag):  # another principal's operation
        authorization.bind_operation(settings, op, other)
    with pytest.raises(ApiError):
        authorization.require_operation(settings, other, op)
    authorization.require_operation(settings, owner, op)


def test_job_link_rows_know_when_they_were_written(settings: Settings) -> None:
    ref = WorkspaceRef(_guid(), "rg", "ws").experiment("e").job("parent")
    job_links.index(settings, ref, {"array": {"count": 2}}, NOW)
    table = ports.of(settings.storage_connection_string).table(storage.T_JOB_LINKS)
    row = table.get(job_links.ARRAYS, ref.key)
    assert row is not None
    assert not job_links._orphan(row, NOW + job_links.ORPHAN_AFTER)
    assert job_links._orphan(row, NOW + job_links.ORPHAN_AFTER + timedelta(seconds=1))
    job_links.forget(settings, job_links.ARRAYS, ref.key)
    job_links.forget(settings, job_links.ARRAYS, ref.key)  # gone already: no error
    assert table.get(job_links.ARRAYS, ref.key) is None
