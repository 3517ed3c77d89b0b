"""`batchai workspace ...`: create, list, show, delete workspaces."""

from __future__ import annotations

from typing import Annotated

import typer
from azure.mgmt.batchai import models

from shared.cli.common import GroupOpt, OutputOpt, output_format, session
from shared.cli.output import message, show_list, show_one

app = typer.Typer(help="Workspaces: the top-level container of clusters, experiments and file servers.",
                  no_args_is_help=True)

COLUMNS = [
    ("Name", lambda w: w.name),
    ("Location", lambda w: w.location),
    ("State", lambda w: w.provisioning_state),
    ("Created", lambda w: w.creation_time),
]

NameArg = Annotated[str, typer.Argument(help="Workspace name.")]


@app.command("create")
def create(ctx: typer.Context, name: NameArg, location: Annotated[str | None, typer.Option(
               "--location", "-l", help="Location (default: the endpoint file's, else 'local').")] = None,
           group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Create a workspace (or return the existing one)."""
    s = session(ctx)
    where = location or s.endpoint.get("location") or "local"
    ws = s.client.workspaces.begin_create(s.resource_group(group), name,
                                          models.WorkspaceCreateParameters(location=where)).result()
    show_one(ws, output_format(ctx, output))


@app.command("list")
def list_(ctx: typer.Context, group: GroupOpt = None, output: OutputOpt = None,
          all_groups: Annotated[bool, typer.Option("--all", help="Every resource group of the subscription.")]
          = False) -> None:
    """List the workspaces of the resource group."""
    s = session(ctx)
    items = s.client.workspaces.list() if all_groups else s.client.workspaces.list_by_resource_group(
        s.resource_group(group))
    show_list(items, COLUMNS, output_format(ctx, output), title="Workspaces")


@app.command("show")
def show(ctx: typer.Context, name: NameArg, group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Show a workspace."""
    s = session(ctx)
    show_one(s.client.workspaces.get(s.resource_group(group), name), output_format(ctx, output))


@app.command("delete")
def delete(ctx: typer.Context, name: NameArg, group: GroupOpt = None) -> None:
    """Delete a workspace with its experiments, jobs, clusters and file servers."""
    s = session(ctx)
    s.client.workspaces.begin_delete(s.resource_group(group), name).result()
    message(f"deleted workspace {name}")
