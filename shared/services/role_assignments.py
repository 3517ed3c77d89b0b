"""Role assignments, in ARM's shape (`{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`,
api-version 2022-04-01). The only writer of table `roleassignments`.

One partition per subscription: row "ra|{name}" is the assignment; row "key|{hash of scope, role,
principal}" names the assignment that holds that triple, so two assignments of the same role to the
same principal at the same scope cannot both exist (ARM: 409 RoleAssignmentExists). Both rows are
written and removed in one entity-group transaction. Names are GUIDs, unique in the service (ARM: in
the tenant); a PUT of an existing name with other properties is refused (RoleAssignmentUpdateNotPermitted).
Who may create, read or delete an assignment is decided by the caller (the API's route rules).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import ports
from shared.adapters import storage
from shared.config import Settings
from shared.domain import principals, rbac
from shared.domain.errors import ApiError, bad_request, conflict
from shared.domain.resources import iso
from shared.ports.contract import Table
from shared.ports.rows import Delete, Insert, Query, StaleEtag, key_fields

API_VERSION = "2022-04-01"
TYPE = "Microsoft.Authorization/roleAssignments"
PATH = "/providers/Microsoft.Authorization/roleAssignments/"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")
ATTEMPTS = 5


@dataclass(frozen=True)
class Assignment:
    name: str
    scope: str
    role_guid: str
    principal_id: str
    principal_type: str
    description: str
    created_on: str
    created_by: str

    @property
    def arm_id(self) -> str:
        return f"{self.scope.rstrip('/')}{PATH}{self.name}"

    def grant(self) -> rbac.Grant:
        return rbac.Grant(self.principal_id, self.role_guid, self.scope)

    def render(self) -> dict[str, Any]:
        subscription = rbac.subscription_of(self.scope) or ""
        role = rbac.role_by_guid(self.role_guid)
        definition = rbac.role_definition_id(subscription, role) if role else self.role_guid
        return {"id": self.arm_id, "name": self.name, "type": TYPE,
                "properties": {"roleDefinitionId": definition, "principalId": self.principal_id,
                               "principalType": self.principal_type, "scope": self.scope,
                               "description": self.description or None, "condition": None,
                               "conditionVersion": None, "createdOn": self.created_on, "updatedOn": self.created_on,
                               "createdBy": self.created_by, "updatedBy": self.created_by,
                               "delegatedManagedIdentityResourceId": None}}


def _table(settings: Settings) -> Table:
    return ports.of(settings.storage_connection_string).table(storage.T_ROLE_ASSIGNMENTS)


def _partition(scope: str) -> str:
    return (rbac.subscription_of(scope) or "").lower()


def _triple_row(scope: str, role_guid: str, principal_id: str) -> str:
    text = f"{rbac.normalize(scope)}|{role_guid.lower()}|{principal_id.lower()}"
    return "key|" + hashlib.sha256(text.encode()).hexdigest()[:40]


def _from_entity(e: Any) -> Assignment:
    return Assignment(e["RowKey"].removeprefix("ra|"), e["scope"], e["roleDefinition"], e["principalId"],
                      e["principalType"], e.get("description") or "", e["createdOn"], e.get("createdBy") or "")


def _read(table: Table, pk: str, name: str) -> tuple[Assignment, str] | None:
    row = table.get(pk, f"ra|{name.lower()}")
    return None if row is None else (_from_entity(row), row.etag)


def check_name(name: str) -> str:
    if not principals.is_guid(name):
        raise bad_request(f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
                          "roleAssignmentName", code="InvalidRoleAssignmentId")
    return name.lower()


def check_scope(scope: str) -> str:
    try:
        return rbac.check_scope(scope)
    except ValueError as e:
        raise bad_request(f"The scope '{scope}' is not valid: {e}.", "scope", code="InvalidScope") from e


def _requested(scope: str, name: str, body: Any, caller: principals.Principal, now: datetime) -> Assignment:
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise bad_request("The request body must be a JSON object with 'properties'.", "properties",
                          code="InvalidRequestContent")
    definition = props.get("roleDefinitionId")
    role = rbac.role_of_definition_id(definition) if isinstance(definition, str) else None
    if role is None:
        raise bad_request(f"The specified role definition with ID '{definition}' does not exist.",
                          "properties.roleDefinitionId", code="RoleDefinitionDoesNotExist")
    principal_id = props.get("principalId")
    if not isinstance(principal_id, str) or not principals.is_guid(principal_id):
        raise bad_request("A valid principal ID must be provided for role assignment.", "properties.principalId",
                          code="InvalidPrincipalId")
    kind = props.get("principalType", "User")
    if kind not in PRINCIPAL_TYPES:
        raise bad_request(f"The principal type '{kind}' is not one of {', '.join(PRINCIPAL_TYPES)}.",
                          "properties.principalType", code="InvalidPrincipalType")
    description = props.get("description") or ""
    if not isinstance(description, str) or len(description) > 2048:
        raise bad_request("'properties.description' must be a string of at most 2048 characters.",
                          "properties.description")
    return Assignment(name, scope, role.guid, principal_id.lower(), kind, description, iso(now), caller.object_id)


def _same(a: Assignment, b: Assignment) -> bool:
    return (rbac.normalize(a.scope), a.role_guid, a.principal_id, a.principal_type) == \
        (rbac.normalize(b.scope), b.role_guid, b.principal_id, b.principal_type)


def create(settings: Settings, scope: str, name: str, body: Any, caller: principals.Principal,
           now: datetime) -> tuple[dict[str, Any], bool]:
    """The assignment as ARM renders it, and whether this call created it (201) or it existed as asked (200)."""
    wanted = _requested(check_scope(scope), check_name(name), body, caller, now)
    table, pk = _table(settings), _partition(scope)
    entity = {"PartitionKey": pk, "RowKey": f"ra|{wanted.name}", "scope": wanted.scope,
              "roleDefinition": wanted.role_guid, "principalId": wanted.principal_id,
              "principalType": wanted.principal_type, "description": wanted.description,
              "createdOn": wanted.created_on, "createdBy": wanted.created_by}
    key = {"PartitionKey": pk, "RowKey": _triple_row(wanted.scope, wanted.role_guid, wanted.principal_id),
           "name": wanted.name}
    for _ in range(ATTEMPTS):
        found = _read(table, pk, wanted.name)
        if found is not None:
            if not _same(found[0], wanted):
                raise ApiError(409, "RoleAssignmentUpdateNotPermitted",
                               "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
            return found[0].render(), False
        try:
            table.transact([Insert(*key_fields(entity)), Insert(*key_fields(key))])
        except StaleEtag as e:  # a row of the two exists
            if _read(table, pk, wanted.name) is None and _holder(table, key) is not None:
                raise conflict("The role assignment already exists.", code="RoleAssignmentExists") from e
            continue
        return wanted.render(), True
    raise conflict("The role assignment is being changed concurrently; retry.")


def _holder(table: Table, key: dict[str, Any]) -> str | None:
    row = table.get(key["PartitionKey"], key["RowKey"])
    return None if row is None else str(row["name"])


def get(settings: Settings, scope: str, name: str) -> dict[str, Any]:
    found = _read(_table(settings), _partition(check_scope(scope)), check_name(name))
    if found is None or rbac.normalize(found[0].scope) != rbac.normalize(scope):
        raise ApiError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
    return found[0].render()


def delete(settings: Settings, scope: str, name: str) -> dict[str, Any] | None:
    """The deleted assignment, or None when there was none at this scope (ARM: 204)."""
    table, pk = _table(settings), _partition(check_scope(scope))
    for _ in range(ATTEMPTS):
        found = _read(table, pk, check_name(name))
        if found is None or rbac.normalize(found[0].scope) != rbac.normalize(scope):
            return None
        assignment, etag = found
        key_row = _triple_row(assignment.scope, assignment.role_guid, assignment.principal_id)
        try:
            table.transact([Delete(pk, f"ra|{assignment.name}", etag), Delete(pk, key_row)])
        except StaleEtag:  # changed or gone since it was read
            continue
        return assignment.render()
    raise conflict("The role assignment is being changed concurrently; retry.")


def in_subscription(settings: Settings, subscription: str) -> Iterator[Assignment]:
    for row in _table(settings).query(Query(pk=subscription.lower(), rk_range=("ra|", "ra}"))):
        yield _from_entity(row)


_AT_SCOPE = r"atScope\(\)"
_PRINCIPAL = r"principalId\s+eq\s+'([0-9a-fA-F-]{36})'"
_FILTERS = [(re.compile(p, re.IGNORECASE), at, by) for p, at, by in (
    (_AT_SCOPE, True, False), (_PRINCIPAL, False, True), (rf"{_AT_SCOPE}\s+and\s+{_PRINCIPAL}", True, True),
    (rf"{_PRINCIPAL}\s+and\s+{_AT_SCOPE}", True, True))]


def list_at(settings: Settings, scope: str, query_filter: str | None) -> list[Assignment]:
    """Assignments at, above and below `scope` (ARM's list for a scope); `$filter=atScope()` keeps those
    at or above it, `principalId eq '{id}'` those of one principal."""
    check_scope(scope)
    at_scope, principal = False, None
    if query_filter and query_filter.strip():
        for pattern, at, by in _FILTERS:
            match = pattern.fullmatch(query_filter.strip())
            if match:
                at_scope, principal = at, (match.group(1).lower() if by else None)
                break
        else:
            raise bad_request(f"The filter '{query_filter}' is not supported: use atScope(), "
                              "principalId eq '{id}', or both joined by 'and'.", "$filter", code="InvalidFilter")
    found = []
    for a in in_subscription(settings, rbac.subscription_of(scope) or ""):
        above = rbac.contains(a.scope, scope)
        if (above or (not at_scope and rbac.contains(scope, a.scope))) and principal in (None, a.principal_id):
            found.append(a)
    return sorted(found, key=lambda a: (len(a.scope), a.scope.lower(), a.name))
