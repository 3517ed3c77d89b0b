"""`batchai job metrics`: the metrics a job's tasks logged (`batchai_metrics.log`, or the stdout line
protocol), one row per value, from the service's job metrics route (an addition beyond 2018-05-01
that the SDK does not know, sent through the SDK client's own pipeline)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shared.cli.arm import _send, workspace_path
from shared.cli.common import GroupOpt, OutputOpt, output_format, session
from shared.cli.jobs import ExperimentArg, ExperimentOpt, NameArg, NameOpt, WorkspaceArg, WorkspaceOpt, names
from shared.cli.output import out, print_json

MetricOpt = Annotated[str | None, typer.Option("--metric", "-m", help="Only this metric (e.g. loss).")]


def job_metrics(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None,
                name: NameArg = None, metric: MetricOpt = None, workspace_opt: WorkspaceOpt = None,
                experiment_opt: ExperimentOpt = None, name_opt: NameOpt = None, group: GroupOpt = None,
                output: OutputOpt = None) -> None:
    """List the metrics a job logged: name, task output, step and value (json: one series per name and task)."""
    s = session(ctx)
    ws, exp, job = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt)
    path = f"{workspace_path(s.client, s.resource_group(group), ws)}/experiments/{exp}/jobs/{job}/metrics"
    series: list[dict[str, Any]] = _send(s.client, "GET", path, (200,), {"name": metric} if metric else {}
                                         ).http_response.json()["value"]
    if output_format(ctx, output) == "json":
        print_json(series)
        return
    from rich.table import Table

    table = Table(title=f"Metrics of job {job}")
    for header in ("Name", "Source", "Step", "Value"):
        table.add_column(header, overflow="fold")
    for one in series:
        for point in one["points"]:
            table.add_row(one["name"], one["source"], str(point["step"]), repr(point["value"]))
    out().print(table)
