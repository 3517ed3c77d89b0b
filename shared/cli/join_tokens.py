"""`batchai node token create|list|revoke`: the join tokens of a bring-your-own cluster (the service's
addition beyond 2018-05-01), sent through the SDK client's own pipeline (its credential and ARM errors).
A token is shown once, when it is made; `batchai node join` on a machine takes it."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat

from shared.cli.arm import workspace_path
from shared.cli.common import GroupOpt, OutputOpt, output_format, session
from shared.cli.output import message, print_json
from shared.domain.contract import API_VERSION

app = typer.Typer(help="Join tokens of a bring-your-own cluster.", no_args_is_help=True)

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]
ClusterOpt = Annotated[str, typer.Option("--cluster", "-c", help="Cluster name (its nodeSource: bringYourOwn).")]


def _call(ctx: typer.Context, group: str | None, workspace: str, cluster: str, method: str, tail: str = "",
          body: dict[str, Any] | None = None) -> Any:
    s = session(ctx)
    client = s.client
    path = f"{workspace_path(client, s.resource_group(group), workspace)}/clusters/{cluster}/joinTokens{tail}"
    request = HttpRequest(method, client._client.format_url(path), params={"api-version": API_VERSION}, json=body)
    response = client._client.send_request(request, _return_pipeline_response=True).http_response
    if response.status_code not in (200, 204):
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    return response.json() if response.status_code == 200 and response.text() else None


@app.command("create")
def create(ctx: typer.Context, workspace: WorkspaceOpt, cluster: ClusterOpt,
           hours: Annotated[float, typer.Option("--expires-in-hours", help="Lifetime (at most 720).")] = 24.0,
           group: GroupOpt = None) -> None:
    """Make a join token (printed once, as JSON: name, token, expiresAt)."""
    print_json(_call(ctx, group, workspace, cluster, "POST", body={"expiresInHours": hours}))


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceOpt, cluster: ClusterOpt, group: GroupOpt = None,
          output: OutputOpt = None) -> None:
    """The cluster's join tokens: names and expiry (never a token)."""
    tokens = _call(ctx, group, workspace, cluster, "GET")["value"]
    if output_format(ctx, output) == "json":
        print_json(tokens)
        return
    for token in tokens:
        message(f"{token['name']}  expires {token['expiresAt']}")


@app.command("revoke")
def revoke(ctx: typer.Context, workspace: WorkspaceOpt, cluster: ClusterOpt,
           name: Annotated[str, typer.Argument(help="The token's name.")], group: GroupOpt = None) -> None:
    """Revoke a join token: the nodes that joined with it are lost and get no further job."""
    _call(ctx, group, workspace, cluster, "DELETE", f"/{name}")
    message(f"revoked join token {name} of {workspace}/{cluster}")
