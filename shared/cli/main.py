"""The `batchai` command line: the root command, its global options, and how failures are reported.

The groups, verbs and flags of `az batchai` (azure-cli 2.0.67): workspace, cluster (with node and file),
experiment, job (with file and node), file-server, list-usages; names may also be given as positional
arguments. Beyond it: stack (the local stack, tokens for its principals), node (local nodes: preempt),
scoring, role (role assignments, as `az role`), dashboard (the web dashboard's link), job metrics. Every
resource command goes through the official azure-mgmt-batchai SDK's client. Service errors print their ARM
error code and message and exit 1; usage errors exit 2; no traceback for either.
`node join` and `node token` serve bring-your-own clusters (this machine joins one; its join tokens).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from typer.core import TyperGroup

from shared.cli import (
    clusters,
    experiments,
    fileservers,
    jobs,
    join_tokens,
    node_join,
    nodes,
    roles,
    scoring,
    stack,
    sweeps,
    usages,
    workspaces,
)
from shared.cli.context import ENDPOINT_ENV, STATE_DIR_ENV, CliError, Session
from shared.cli.dashboard import dashboard
from shared.cli.metrics import job_metrics
from shared.cli.output import err_console


def service_error_text(error: HttpResponseError) -> str:
    body = error.error
    if body is not None and body.code:
        text = f"{body.code}: {body.message}"
        for detail in getattr(body, "details", None) or []:
            text += f"\n  {detail.code}: {detail.message}"
        return text
    text = f"HTTP {error.status_code or ''} {error.reason or ''}".strip()
    body_text = error.response.text().strip() if error.response is not None else ""
    return f"{text}: {body_text[:500]}" if body_text else text


def command_paths(group: TyperGroup, ctx: typer.Context, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(`group verb`, short help) of every command under `group`, depth first, in listing order."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}".strip()
        if isinstance(command, TyperGroup):
            yield from command_paths(command, ctx, path)
        else:
            yield path, command.get_short_help_str(limit=80)


class ReportingGroup(TyperGroup):
    """Turns service and CLI failures into a message on stderr and an exit code; its help lists every verb."""

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        if ctx.parent is None:
            paths = list(command_paths(self, ctx))
            width = max(len(path) for path, _ in paths)
            typer.echo("\nEvery command:")
            for path, text in paths:
                typer.echo(f"  {path:<{width}}  {text}")

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as e:
            err_console.print(f"error: {e}", markup=False)
            raise typer.Exit(e.exit_code) from None
        except HttpResponseError as e:
            err_console.print(f"error: {service_error_text(e)}", markup=False)
            raise typer.Exit(1) from None
        except ServiceRequestError as e:
            err_console.print(f"error: cannot reach the service: {e.message}", markup=False)
            raise typer.Exit(1) from None


app = typer.Typer(name="batchai", cls=ReportingGroup, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False,
                  help="Batch AI (REST API 2018-05-01) on your own machines, through the official SDK.")
app.add_typer(stack.app, name="stack")
app.add_typer(workspaces.app, name="workspace")
app.add_typer(clusters.app, name="cluster")
app.add_typer(experiments.app, name="experiment")
app.add_typer(jobs.app, name="job")
jobs.app.command("metrics")(job_metrics)
app.add_typer(fileservers.app, name="file-server")
app.command("list-usages")(usages.list_usages)
app.add_typer(nodes.app, name="node")
nodes.app.command("join")(node_join.join)
nodes.app.add_typer(join_tokens.app, name="token")
app.add_typer(scoring.app, name="scoring")
app.add_typer(sweeps.app, name="sweep")
app.add_typer(roles.app, name="role")
app.command("dashboard")(dashboard)


@app.callback()
def root(
    ctx: typer.Context,
    endpoint: Annotated[str | None, typer.Option(
        "--endpoint", envvar=ENDPOINT_ENV, help="Endpoint file (default: <state-dir>/local/endpoint.json).")] = None,
    state_dir: Annotated[str | None, typer.Option(
        "--state-dir", envvar=STATE_DIR_ENV, help="The local stack's state directory (default: .batchai).")] = None,
    subscription: Annotated[str | None, typer.Option(
        "--subscription", help="Subscription id (default: the endpoint file's).")] = None,
    resource_group: Annotated[str | None, typer.Option(
        "--resource-group", "-g", help="Resource group (default: the endpoint file's).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    ctx.obj = Session(endpoint_option=endpoint, state_dir_option=state_dir, subscription_option=subscription,
                      resource_group_option=resource_group, output=output)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
