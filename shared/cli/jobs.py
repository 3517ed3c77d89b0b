"""`batchai job ...`: create from a Batch AI job file, list, show, wait, terminate, delete jobs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from azure.mgmt.batchai import models

from shared.cli import job_files
from shared.cli.common import (
    GroupOpt,
    OutputOpt,
    StorageKeyOpt,
    StorageNameOpt,
    output_format,
    session,
    storage_account,
)
from shared.cli.context import CliError, Session
from shared.cli.output import message, show_list, show_one
from shared.cli.specfiles import load_job_file

app = typer.Typer(help="Jobs: toolkit commands run on a cluster's nodes.", no_args_is_help=True)
app.add_typer(job_files.app, name="file")

ENDED = ("succeeded", "failed")

WorkspaceArg = Annotated[str, typer.Argument(help="Workspace name.")]
ExperimentArg = Annotated[str, typer.Argument(help="Experiment name.")]
NameArg = Annotated[str, typer.Argument(help="Job name.")]


def toolkit(j: models.Job) -> str:
    return j.tool_type or ""


COLUMNS = [
    ("Name", lambda j: j.name),
    ("Cluster", lambda j: (j.cluster.id.rsplit("/", 1)[-1] if j.cluster and j.cluster.id else "")),
    ("Nodes", lambda j: j.node_count),
    ("Toolkit", toolkit),
    ("Priority", lambda j: j.scheduling_priority),
    ("State", lambda j: j.execution_state),
    ("Exit code", lambda j: j.execution_info.exit_code if j.execution_info else None),
    ("Created", lambda j: j.creation_time),
]


def cluster_arm_id(s: Session, group: str, workspace: str, cluster: str) -> str:
    """--cluster takes a name in the job's workspace, or a full cluster ARM id."""
    if cluster.startswith("/"):
        return cluster
    return f"{s.arm_prefix(group)}/workspaces/{workspace}/clusters/{cluster}"


@app.command("create")
def create(
    ctx: typer.Context, workspace: WorkspaceArg, experiment: ExperimentArg, name: NameArg,
    file: Annotated[Path, typer.Option("--file", "-f", help="A Batch AI job file (job.json).")],
    cluster: Annotated[str | None, typer.Option("--cluster", "-c", help="Cluster name in the workspace (or id); "
                                                "overrides the file's cluster.")] = None,
    storage_name: StorageNameOpt = None, storage_key: StorageKeyOpt = None,
    group: GroupOpt = None, output: OutputOpt = None,
) -> None:
    """Submit a job described by a Batch AI job file ($schema + properties). nodeCount defaults to 1."""
    s = session(ctx)
    rg = s.resource_group(group)
    cluster_id = cluster_arm_id(s, rg, workspace, cluster) if cluster else None
    params = load_job_file(file, cluster_id, storage_account(ctx, storage_name, storage_key))
    job = s.client.jobs.begin_create(rg, workspace, experiment, name, params).result()
    show_one(job, output_format(ctx, output))


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg, experiment: ExperimentArg, group: GroupOpt = None,
          output: OutputOpt = None) -> None:
    """List the jobs of an experiment."""
    s = session(ctx)
    show_list(s.client.jobs.list_by_experiment(s.resource_group(group), workspace, experiment), COLUMNS,
              output_format(ctx, output), title=f"Jobs in {workspace}/{experiment}")


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg, experiment: ExperimentArg, name: NameArg,
         group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Show a job, with its execution state and info."""
    s = session(ctx)
    show_one(s.client.jobs.get(s.resource_group(group), workspace, experiment, name), output_format(ctx, output))


@app.command("terminate")
def terminate(ctx: typer.Context, workspace: WorkspaceArg, experiment: ExperimentArg, name: NameArg,
              group: GroupOpt = None) -> None:
    """Stop a job on every node; it ends as failed."""
    s = session(ctx)
    s.client.jobs.begin_terminate(s.resource_group(group), workspace, experiment, name).result()
    message(f"terminated job {workspace}/{experiment}/{name}")


@app.command("delete")
def delete(ctx: typer.Context, workspace: WorkspaceArg, experiment: ExperimentArg, name: NameArg,
           group: GroupOpt = None) -> None:
    """Delete a job (a running job is stopped first)."""
    s = session(ctx)
    s.client.jobs.begin_delete(s.resource_group(group), workspace, experiment, name).result()
    message(f"deleted job {workspace}/{experiment}/{name}")


def exit_code_of(job: models.Job) -> int:
    """The job's own exit code; 1 for a failed job that has none (terminated, never started)."""
    code = job.execution_info.exit_code if job.execution_info else None
    if code is not None:
        return int(code)
    return 0 if job.execution_state == "succeeded" else 1


@app.command("wait")
def wait(ctx: typer.Context, workspace: WorkspaceArg, experiment: ExperimentArg, name: NameArg,
         timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 124).")] = None,
         interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
         group: GroupOpt = None) -> None:
    """Wait until the job succeeds or fails; exit with the job's exit code."""
    s = session(ctx)
    rg = s.resource_group(group)
    deadline = None if timeout is None else time.monotonic() + timeout
    last_state = None
    while True:
        job = s.client.jobs.get(rg, workspace, experiment, name)
        if job.execution_state != last_state:
            message(f"job {name}: {job.execution_state}")
            last_state = job.execution_state
        if job.execution_state in ENDED:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise CliError(f"job {name} is still {job.execution_state} after {timeout:g} s", exit_code=124)
        time.sleep(interval)
    for error in (job.execution_info.errors if job.execution_info else None) or []:
        message(f"  {error.code}: {error.message}")
    code = exit_code_of(job)
    message(f"job {name} {job.execution_state} (exit code {code})")
    raise typer.Exit(code)
