"""`batchai experiment ...`: create, list, show, delete experiments of a workspace (`az batchai experiment` flags)."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli.common import GroupOpt, NoWaitOpt, OutputOpt, YesOpt, confirm, output_format, pick, session
from shared.cli.output import message, show_list, show_one

app = typer.Typer(help="Experiments: named groups of jobs in a workspace.", no_args_is_help=True)

COLUMNS = [
    ("Name", lambda e: e.name),
    ("State", lambda e: e.provisioning_state),
    ("Created", lambda e: e.creation_time),
]

WorkspaceArg = Annotated[str | None, typer.Argument(help="Workspace name (or -w).", show_default=False)]
NameArg = Annotated[str | None, typer.Argument(help="Experiment name (or -n).", show_default=False)]
WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name.")]
NameOpt = Annotated[str | None, typer.Option("--name", "-n", help="Experiment name.")]


def names(workspace: str | None, workspace_opt: str | None, name: str | None = None,
          name_opt: str | None = None, with_name: bool = True) -> tuple[str, str]:
    ws = pick("the workspace", workspace, workspace_opt, "--workspace/-w")
    return ws, (pick("the experiment name", name, name_opt, "--name/-n") if with_name else "")


@app.command("create")
def create(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
           workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, group: GroupOpt = None,
           output: OutputOpt = None) -> None:
    """Create an experiment (or return the existing one)."""
    s = session(ctx)
    ws, exp = names(workspace, workspace_opt, name, name_opt)
    show_one(s.client.experiments.begin_create(s.resource_group(group), ws, exp).result(), output_format(ctx, output))


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg = None, workspace_opt: WorkspaceOpt = None,
          group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the experiments of a workspace."""
    s = session(ctx)
    ws, _ = names(workspace, workspace_opt, with_name=False)
    show_list(s.client.experiments.list_by_workspace(s.resource_group(group), ws), COLUMNS,
              output_format(ctx, output), title=f"Experiments in {ws}")


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
         workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, group: GroupOpt = None,
         output: OutputOpt = None) -> None:
    """Show an experiment."""
    s = session(ctx)
    ws, exp = names(workspace, workspace_opt, name, name_opt)
    show_one(s.client.experiments.get(s.resource_group(group), ws, exp), output_format(ctx, output))


@app.command("delete")
def delete(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
           workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, group: GroupOpt = None,
           yes: YesOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Delete an experiment and its jobs."""
    s = session(ctx)
    ws, exp = names(workspace, workspace_opt, name, name_opt)
    confirm(yes, f"Delete experiment {ws}/{exp} with its jobs?")
    poller = s.client.experiments.begin_delete(s.resource_group(group), ws, exp, polling=not no_wait)
    if no_wait:
        message(f"deleting experiment {ws}/{exp}")
        return
    poller.result()
    message(f"deleted experiment {ws}/{exp}")
