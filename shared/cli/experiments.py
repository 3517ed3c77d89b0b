"""`batchai experiment ...`: create, list, show, delete experiments of a workspace."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli.common import GroupOpt, OutputOpt, output_format, session
from shared.cli.output import message, show_list, show_one

app = typer.Typer(help="Experiments: named groups of jobs in a workspace.", no_args_is_help=True)

COLUMNS = [
    ("Name", lambda e: e.name),
    ("State", lambda e: e.provisioning_state),
    ("Created", lambda e: e.creation_time),
]

WorkspaceArg = Annotated[str, typer.Argument(help="Workspace name.")]
NameArg = Annotated[str, typer.Argument(help="Experiment name.")]


@app.command("create")
def create(ctx: typer.Context, workspace: WorkspaceArg, name: NameArg, group: GroupOpt = None,
           output: OutputOpt = None) -> None:
    """Create an experiment (or return the existing one)."""
    s = session(ctx)
    exp = s.client.experiments.begin_create(s.resource_group(group), workspace, name).result()
    show_one(exp, output_format(ctx, output))


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg, group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the experiments of a workspace."""
    s = session(ctx)
    show_list(s.client.experiments.list_by_workspace(s.resource_group(group), workspace), COLUMNS,
              output_format(ctx, output), title=f"Experiments in {workspace}")


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg, name: NameArg, group: GroupOpt = None,
         output: OutputOpt = None) -> None:
    """Show an experiment."""
    s = session(ctx)
    show_one(s.client.experiments.get(s.resource_group(group), workspace, name), output_format(ctx, output))


@app.command("delete")
def delete(ctx: typer.Context, workspace: WorkspaceArg, name: NameArg, group: GroupOpt = None) -> None:
    """Delete an experiment and its jobs."""
    s = session(ctx)
    s.client.experiments.begin_delete(s.resource_group(group), workspace, name).result()
    message(f"deleted experiment {workspace}/{name}")
