"""Role assignments and role definitions routes, at ARM's own paths and api-version 2022-04-01 (what
azure-mgmt-authorization sends): `{scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]`
(PUT, GET, DELETE, list with `$filter`) and `{scope}/providers/Microsoft.Authorization/roleDefinitions[/{id}]`."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from functions.api.common import JsonBody, settings
from shared.domain import rbac
from shared.domain.errors import ApiError, bad_request
from shared.services import role_assignments
from shared.services.api_common import utcnow

router = APIRouter()
AUTHORIZATION = "/{scope:path}/providers/Microsoft.Authorization"
ASSIGNMENTS = AUTHORIZATION + "/roleAssignments"
ASSIGNMENT = ASSIGNMENTS + "/{roleAssignmentName}"
DEFINITIONS = AUTHORIZATION + "/roleDefinitions"
DEFINITION = DEFINITIONS + "/{roleDefinitionId}"
API_VERSION = role_assignments.API_VERSION
ROLE_NAME_FILTER = re.compile(r"roleName\s+eq\s+'([^']*)'", re.IGNORECASE)


def arm_scope(scope: str) -> str:
    """The scope path parameter as an ARM id (the SDK may send it with its leading slash: `//subscriptions`)."""
    return "/" + scope.strip("/")


@router.put(ASSIGNMENT)
def create_assignment(request: Request, scope: str, roleAssignmentName: str, body: JsonBody) -> JSONResponse:
    rendered, created = role_assignments.create(settings(), arm_scope(scope), roleAssignmentName, body,
                                                request.state.principal, utcnow())
    return JSONResponse(rendered, status_code=201 if created else 200)


@router.get(ASSIGNMENT)
def get_assignment(scope: str, roleAssignmentName: str) -> dict[str, Any]:
    return role_assignments.get(settings(), arm_scope(scope), roleAssignmentName)


@router.delete(ASSIGNMENT)
def delete_assignment(scope: str, roleAssignmentName: str) -> Response:
    deleted = role_assignments.delete(settings(), arm_scope(scope), roleAssignmentName)
    return Response(status_code=204) if deleted is None else JSONResponse(deleted)


@router.get(ASSIGNMENTS)
def list_assignments(request: Request, scope: str) -> dict[str, Any]:
    found = role_assignments.list_at(settings(), arm_scope(scope), request.query_params.get("$filter"))
    return {"value": request.state.visible([a.render() for a in found])}


def _subscription(scope: str) -> str:
    subscription = rbac.subscription_of(arm_scope(scope))
    if subscription is None:
        raise bad_request(f"The scope '{arm_scope(scope)}' names no subscription.", "scope", code="InvalidScope")
    return subscription


@router.get(DEFINITIONS)
def list_definitions(request: Request, scope: str) -> dict[str, Any]:
    subscription = _subscription(scope)
    wanted = request.query_params.get("$filter", "").strip()
    roles = list(rbac.ROLES)
    if wanted:
        match = ROLE_NAME_FILTER.fullmatch(wanted)
        if match is None:
            raise bad_request(f"The filter '{wanted}' is not supported: use roleName eq '{{name}}'.", "$filter",
                              code="InvalidFilter")
        roles = [r for r in roles if r.name.lower() == match.group(1).lower()]
    return {"value": [rbac.render_role_definition(r, subscription) for r in roles]}


@router.get(DEFINITION)
def get_definition(scope: str, roleDefinitionId: str) -> dict[str, Any]:
    role = rbac.role_by_guid(roleDefinitionId)
    if role is None:
        raise ApiError(404, "RoleDefinitionDoesNotExist",
                       f"The specified role definition with ID '{roleDefinitionId}' does not exist.")
    return rbac.render_role_definition(role, _subscription(scope))
