"""`batchai workspace ...`: create, list, show, delete workspaces (`az batchai workspace` flags)."""

from __future__ import annotations

from typing import Annotated

import typer
from azure.mgmt.batchai import models

from shared.cli.common import GroupOpt, NoWaitOpt, OutputOpt, YesOpt, confirm, output_format, pick, session
from shared.cli.output import message, show_list, show_one

app = typer.Typer(help="Workspaces: the top-level container of clusters, experiments and file servers.",
                  no_args_is_help=True)

COLUMNS = [
    ("Name", lambda w: w.name),
    ("Location", lambda w: w.location),
    ("State", lambda w: w.provisioning_state),
    ("Created", lambda w: w.creation_time),
]

NameArg = Annotated[str | None, typer.Argument(help="Workspace name (or -n).", show_default=False)]
NameOpt = Annotated[str | None, typer.Option("--workspace", "-n", help="Workspace name.")]


def name_of(positional: str | None, option: str | None) -> str:
    return pick("the workspace name", positional, option, "--workspace/-n")


@app.command("create")
def create(ctx: typer.Context, name: NameArg = None, name_opt: NameOpt = None,
           location: Annotated[str | None, typer.Option(
               "--location", "-l", help="Location (default: the endpoint file's, else 'local').")] = None,
           group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Create a workspace (or return the existing one)."""
    s = session(ctx)
    where = location or s.endpoint.get("location") or "local"
    ws = s.client.workspaces.begin_create(s.resource_group(group), name_of(name, name_opt),
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
def show(ctx: typer.Context, name: NameArg = None, name_opt: NameOpt = None, group: GroupOpt = None,
         output: OutputOpt = None) -> None:
    """Show a workspace."""
    s = session(ctx)
    show_one(s.client.workspaces.get(s.resource_group(group), name_of(name, name_opt)), output_format(ctx, output))


@app.command("delete")
def delete(ctx: typer.Context, name: NameArg = None, name_opt: NameOpt = None, group: GroupOpt = None,
           yes: YesOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Delete a workspace with its experiments, jobs, clusters and file servers."""
    s = session(ctx)
    ws = name_of(name, name_opt)
    confirm(yes, f"Delete workspace {ws} with everything in it?")
    poller = s.client.workspaces.begin_delete(s.resource_group(group), ws, polling=not no_wait)
    if no_wait:
        message(f"deleting workspace {ws}")
        return
    poller.result()
    message(f"deleted workspace {ws}")
