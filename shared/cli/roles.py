"""`batchai role assignment create|list|delete` and `batchai role definition list`, spelled as `az role`.

Requests go to ARM's Microsoft.Authorization paths (api-version 2022-04-01) through the SDK client's
own pipeline (its credential, retries and ARM error mapping). A role is named by its name, GUID or
role definition id (names are resolved by the service, as `az` resolves them); an assignee by its
object id, or on the local stack by its name (`principals.local_object_id` of the tenant in the
endpoint's issuer, as `batchai stack token` names principals).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any

import typer
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, map_error
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from rich.table import Table

from shared.cli.common import OutputOpt, output_format, session
from shared.cli.context import CliError, Session
from shared.cli.output import message, out, print_json
from shared.domain import rbac
from shared.domain.principals import GROUP, USER, is_guid, local_object_id
from shared.localstack.token import tenant_of

API_VERSION = "2022-04-01"
AUTHORIZATION = "/providers/Microsoft.Authorization"

app = typer.Typer(help="Role-based access: who may do what in which scope (as `az role`).", no_args_is_help=True)
assignment = typer.Typer(help="Role assignments of principals and groups at a scope.", no_args_is_help=True)
definition = typer.Typer(help="Role definitions: the roles that can be assigned.", no_args_is_help=True)
app.add_typer(assignment, name="assignment")
app.add_typer(definition, name="definition")


class PrincipalType(StrEnum):
    User = "User"
    Group = "Group"
    ServicePrincipal = "ServicePrincipal"


AssigneeOpt = Annotated[str | None, typer.Option(
    "--assignee", help="Object id, or on the local stack a principal's name (a group's with "
                       "--assignee-principal-type Group).")]
AssigneeIdOpt = Annotated[str | None, typer.Option("--assignee-object-id", help="The assignee's object id.")]
TypeOpt = Annotated[PrincipalType, typer.Option("--assignee-principal-type", help="What the assignee is.")]
RoleOpt = Annotated[str | None, typer.Option("--role", help="Role name (Reader, Contributor, Owner, "
                                                            "'BatchAI Job Submitter'), GUID or definition id.")]
ScopeOpt = Annotated[str | None, typer.Option("--scope", help="ARM id of a subscription, resource group or "
                                                              "Batch AI resource.")]
ScopeGroupOpt = Annotated[str | None, typer.Option("--resource-group", "-g",
                                                   help="Scope: this resource group (when --scope is not given).")]


def send(s: Session, method: str, path: str, params: dict[str, str] | None = None,
         body: dict[str, Any] | None = None) -> Any:
    """One ARM request through the SDK client's pipeline; the JSON body (None for 204), or HttpResponseError."""
    client = s.client._client
    request = HttpRequest(method, client.format_url(path), params={"api-version": API_VERSION, **(params or {})},
                          json=body)
    response = client.send_request(request)
    if response.status_code not in (200, 201, 204):
        map_error(status_code=response.status_code, response=response, error_map={404: ResourceNotFoundError})
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    return response.json() if response.status_code != 204 and response.text() else None


def _scope(s: Session, scope: str | None, group: str | None, required: bool) -> str:
    if scope:
        return "/" + scope.strip("/")
    if group:
        return f"/subscriptions/{s.subscription_id}/resourceGroups/{group}"
    if required:
        raise CliError("pass --scope (an ARM id) or --resource-group/-g", exit_code=2)
    return f"/subscriptions/{s.subscription_id}"


def assignee_id(s: Session, assignee: str | None, object_id: str | None, kind: PrincipalType) -> str | None:
    if object_id:
        if not is_guid(object_id):
            raise CliError(f"--assignee-object-id {object_id!r} is not an object id (a GUID)", exit_code=2)
        return object_id.lower()
    if not assignee:
        return None
    if is_guid(assignee):
        return assignee.lower()
    issuer = str(s.endpoint.get("issuer") or "")
    if not issuer:
        raise CliError(f"cannot resolve the name {assignee!r}: this endpoint has no local issuer; "
                       "pass the assignee's object id", exit_code=2)
    return local_object_id(tenant_of(issuer), GROUP if kind == PrincipalType.Group else USER, assignee)


def _roles(s: Session, scope: str) -> list[dict[str, Any]]:
    return list(send(s, "GET", f"{scope}{AUTHORIZATION}/roleDefinitions")["value"])


def role_definition(s: Session, scope: str, role: str) -> dict[str, Any]:
    """The role named by its name, GUID or role definition id."""
    guid = role.rstrip("/").rsplit("/", 1)[-1]
    for found in _roles(s, scope):
        if found["name"] == guid.lower() or found["properties"]["roleName"].lower() == role.lower():
            return found
    raise CliError(f"role {role!r} does not exist; see `batchai role definition list`")


def flatten(item: dict[str, Any]) -> dict[str, Any]:
    """An assignment as `az role assignment` prints it: its properties beside id, name, type and role name."""
    props = item.get("properties") or {}
    role = rbac.role_of_definition_id(str(props.get("roleDefinitionId", "")))
    return {**props, "id": item["id"], "name": item["name"], "type": item["type"],
            "roleDefinitionName": role.name if role else ""}


def _show(ctx: typer.Context, items: list[dict[str, Any]], output: str | None) -> None:
    if output_format(ctx, output) == "json":
        print_json(items)
        return
    table = Table(title="Role assignments")
    for header in ("Principal", "Type", "Role", "Scope", "Name"):
        table.add_column(header, overflow="fold")
    for a in items:
        table.add_row(a["principalId"], a["principalType"], a["roleDefinitionName"], a["scope"], a["name"])
    out().print(table)


@assignment.command("create")
def create(ctx: typer.Context, role: RoleOpt = None, assignee: AssigneeOpt = None,
           assignee_object_id: AssigneeIdOpt = None, assignee_principal_type: TypeOpt = PrincipalType.User,
           scope: ScopeOpt = None, group: ScopeGroupOpt = None,
           name: Annotated[str | None, typer.Option("--name", help="The assignment's GUID (default: a new one).")]
           = None,
           description: Annotated[str | None, typer.Option("--description")] = None,
           output: OutputOpt = None) -> None:
    """Assign a role to a principal or group at a scope."""
    s = session(ctx)
    principal = assignee_id(s, assignee, assignee_object_id, assignee_principal_type)
    if principal is None or not role:
        raise CliError("pass --role and --assignee (or --assignee-object-id)", exit_code=2)
    where = _scope(s, scope, group, required=True)
    found = role_definition(s, where, role)
    props = {"roleDefinitionId": found["id"], "principalId": principal,
             "principalType": assignee_principal_type.value}
    if description:
        props["description"] = description
    created = send(s, "PUT", f"{where}{AUTHORIZATION}/roleAssignments/{name or uuid.uuid4()}",
                   body={"properties": props})
    item = flatten(created)
    if output_format(ctx, output) == "json":
        print_json(item)
    else:
        _show(ctx, [item], output)


def _matching(s: Session, assignee: str | None, assignee_object_id: str | None, kind: PrincipalType,
              role: str | None, scope: str, exact: bool) -> list[dict[str, Any]]:
    principal = assignee_id(s, assignee, assignee_object_id, kind)
    query = {"$filter": f"principalId eq '{principal}'"} if principal else {}
    items = [flatten(a) for a in send(s, "GET", f"{scope}{AUTHORIZATION}/roleAssignments", query)["value"]]
    if role:
        wanted = role_definition(s, scope, role)["name"]
        items = [a for a in items if a["roleDefinitionId"].rsplit("/", 1)[-1] == wanted]
    if exact:
        items = [a for a in items if a["scope"].rstrip("/").lower() == scope.lower()]
    return items


@assignment.command("list")
def list_(ctx: typer.Context, assignee: AssigneeOpt = None, assignee_object_id: AssigneeIdOpt = None,
          assignee_principal_type: TypeOpt = PrincipalType.User, role: RoleOpt = None, scope: ScopeOpt = None,
          group: ScopeGroupOpt = None, output: OutputOpt = None) -> None:
    """List the role assignments at, above and below a scope (default: the subscription) that you may read."""
    s = session(ctx)
    where = _scope(s, scope, group, required=False)
    _show(ctx, _matching(s, assignee, assignee_object_id, assignee_principal_type, role, where, exact=False), output)


@assignment.command("delete")
def delete(ctx: typer.Context,
           ids: Annotated[list[str] | None, typer.Option("--ids", help="Assignment ids (repeatable).")] = None,
           assignee: AssigneeOpt = None, assignee_object_id: AssigneeIdOpt = None,
           assignee_principal_type: TypeOpt = PrincipalType.User, role: RoleOpt = None, scope: ScopeOpt = None,
           group: ScopeGroupOpt = None) -> None:
    """Delete assignments by id, or those of an assignee and/or role at exactly a scope."""
    s = session(ctx)
    if ids:
        targets = list(ids)
    else:
        if not (assignee or assignee_object_id or role):
            raise CliError("pass --ids, or --assignee and/or --role with --scope", exit_code=2)
        where = _scope(s, scope, group, required=True)
        targets = [a["id"] for a in _matching(s, assignee, assignee_object_id, assignee_principal_type, role,
                                              where, exact=True)]
    if not targets:
        raise CliError("no role assignment matches")
    for target in targets:
        send(s, "DELETE", target)
    message(f"deleted {len(targets)} role assignment(s)")


@definition.command("list")
def definitions(ctx: typer.Context, scope: ScopeOpt = None, output: OutputOpt = None) -> None:
    """List the roles that can be assigned, with their actions."""
    s = session(ctx)
    roles = _roles(s, _scope(s, scope, None, required=False))
    if output_format(ctx, output) == "json":
        print_json(roles)
        return
    table = Table(title="Role definitions")
    for header in ("Name", "Id", "Actions", "NotActions"):
        table.add_column(header, overflow="fold")
    for r in roles:
        permissions = r["properties"]["permissions"][0]
        table.add_row(r["properties"]["roleName"], r["name"], ", ".join(permissions["actions"]),
                      ", ".join(permissions["notActions"]))
    out().print(table)
