"""`batchai job ...`: create from a Batch AI job file, list, show, wait, terminate, delete jobs, and list their
nodes, with `az batchai job` flags; `job file` is in job_files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from azure.mgmt.batchai import models

from shared.cli import arm, job_files, job_links, mounts, node_exec
from shared.cli.common import (
    GroupOpt,
    NoWaitOpt,
    OutputOpt,
    StorageKeyOpt,
    StorageNameOpt,
    YesOpt,
    confirm,
    output_format,
    pick,
    session,
    storage_account,
)
from shared.cli.context import CliError, Session
from shared.cli.output import message, show_list, show_one
from shared.cli.specfiles import load_job_file_parts

app = typer.Typer(help="Jobs: toolkit commands run on a cluster's nodes.", no_args_is_help=True)
app.add_typer(job_files.app, name="file")
node_app = typer.Typer(help="The nodes a job runs on.", no_args_is_help=True)
app.add_typer(node_app, name="node")

ENDED = ("succeeded", "failed")

WorkspaceArg = Annotated[str | None, typer.Argument(help="Workspace name (or -w).", show_default=False)]
ExperimentArg = Annotated[str | None, typer.Argument(help="Experiment name (or -e).", show_default=False)]
NameArg = Annotated[str | None, typer.Argument(help="Job name (or -n).", show_default=False)]
WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name.")]
ExperimentOpt = Annotated[str | None, typer.Option("--experiment", "-e", help="Experiment name.")]
NameOpt = Annotated[str | None, typer.Option("--name", "-n", help="Job name.")]
JobOpt = Annotated[str | None, typer.Option("--job", "-j", help="Job name.")]


def names(workspace: str | None, workspace_opt: str | None, experiment: str | None, experiment_opt: str | None,
          name: str | None = None, name_opt: str | None = None, flag: str = "--name/-n") -> tuple[str, str, str]:
    """(workspace, experiment, job); the job is "" when neither form gives it and `flag` is empty."""
    ws = pick("the workspace", workspace, workspace_opt, "--workspace/-w")
    exp = pick("the experiment", experiment, experiment_opt, "--experiment/-e")
    return ws, exp, (pick("the job name", name, name_opt, flag) if flag else "")


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

NODE_COLUMNS = [
    ("Node", lambda n: n.node_id),
    ("Address", lambda n: n.ip_address),
    ("SSH port", lambda n: n.port),
]


def cluster_arm_id(s: Session, group: str, workspace: str, cluster: str) -> str:
    """--cluster takes a name in the job's workspace, or a full cluster ARM id."""
    if cluster.startswith("/"):
        return cluster
    return f"{s.arm_prefix(group)}/workspaces/{workspace}/clusters/{cluster}"


@app.command("create")
def create(
    ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None, name: NameArg = None,
    workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, name_opt: NameOpt = None,
    file: Annotated[Path | None, typer.Option("--config-file", "--file", "-f",
                                              help="A Batch AI job file (job.json).")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", "-c", help="Cluster name in the workspace (or id); "
                                                "overrides the file's cluster.")] = None,
    nfs: mounts.NfsOpt = None, nfs_mount_path: mounts.NfsPathOpt = "nfs",
    afs_name: mounts.AfsOpt = None, afs_mount_path: mounts.AfsPathOpt = "afs",
    bfs_name: mounts.BfsOpt = None, bfs_mount_path: mounts.BfsPathOpt = "bfs",
    storage_name: StorageNameOpt = None, storage_key: StorageKeyOpt = None,
    group: GroupOpt = None, output: OutputOpt = None,
    gpus_per_node: Annotated[int | None, typer.Option(
        "--gpus-per-node", min=1, help="GPUs the job takes on each of its nodes (on a gpu-slots cluster, "
                                       "jobs share nodes by these).")] = None,
    array: job_links.ArrayOpt = None, max_concurrent: job_links.MaxConcurrentOpt = None,
    depends_on: job_links.DependsOnOpt = None,
) -> None:
    """Submit a job described by a Batch AI job file ($schema + properties). nodeCount defaults to 1. --nfs,
    --afs-name and --bfs-name mount for the job only, under $AZ_BATCHAI_JOB_MOUNT_ROOT. --array,
    --max-concurrent and --depends-on (or the file's array and dependsOn) make an array job or a
    dependent one."""
    if file is None:
        raise CliError("pass the job file: --config-file/-f job.json", exit_code=2)
    s = session(ctx)
    rg = s.resource_group(group)
    ws, exp, job = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt)
    cluster_id = cluster_arm_id(s, rg, ws, cluster) if cluster else None
    account = storage_account(ctx, storage_name, storage_key)
    params, from_file = load_job_file_parts(file, cluster_id, account)
    extra = job_links.additions(from_file, array, max_concurrent, depends_on)
    flags = mounts.MountFlags(nfs, nfs_mount_path, afs_name, afs_mount_path, bfs_name, bfs_mount_path)
    if flags.any():
        existing = params.mount_volumes.serialize() if params.mount_volumes else None
        volumes = mounts.add_mounts(existing, flags, account, lambda fs: arm.file_server_id(s.client, rg, ws, fs))
        params.mount_volumes = models.MountVolumes.deserialize(volumes)
    if gpus_per_node is not None:
        extra["gpusPerNode"] = gpus_per_node
    created = s.client.jobs.begin_create(rg, ws, exp, job, params,
                                         raw_request_hook=arm.properties_hook(extra)).result()
    show_one(created, output_format(ctx, output))


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None,
          workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, group: GroupOpt = None,
          output: OutputOpt = None) -> None:
    """List the jobs of an experiment."""
    s = session(ctx)
    ws, exp, _ = names(workspace, workspace_opt, experiment, experiment_opt, flag="")
    show_list(s.client.jobs.list_by_experiment(s.resource_group(group), ws, exp), COLUMNS,
              output_format(ctx, output), title=f"Jobs in {ws}/{exp}")


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None, name: NameArg = None,
         workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, name_opt: NameOpt = None,
         group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Show a job, with its execution state and info."""
    s = session(ctx)
    ws, exp, job = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt)
    show_one(s.client.jobs.get(s.resource_group(group), ws, exp, job, cls=arm.as_sent), output_format(ctx, output))


@app.command("terminate")
def terminate(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None,
              name: NameArg = None, workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None,
              name_opt: NameOpt = None, group: GroupOpt = None, yes: YesOpt = False,
              no_wait: NoWaitOpt = False) -> None:
    """Stop a job on every node; it ends as failed."""
    s = session(ctx)
    ws, exp, job = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt)
    confirm(yes, f"Terminate job {ws}/{exp}/{job}?")
    poller = s.client.jobs.begin_terminate(s.resource_group(group), ws, exp, job, polling=not no_wait)
    if no_wait:
        message(f"terminating job {ws}/{exp}/{job}")
        return
    poller.result()
    message(f"terminated job {ws}/{exp}/{job}")


@app.command("delete")
def delete(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None,
           name: NameArg = None, workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None,
           name_opt: NameOpt = None, group: GroupOpt = None, yes: YesOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Delete a job (a running job is stopped first)."""
    s = session(ctx)
    ws, exp, job = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt)
    confirm(yes, f"Delete job {ws}/{exp}/{job}?")
    poller = s.client.jobs.begin_delete(s.resource_group(group), ws, exp, job, polling=not no_wait)
    if no_wait:
        message(f"deleting job {ws}/{exp}/{job}")
        return
    poller.result()
    message(f"deleted job {ws}/{exp}/{job}")


@node_app.command("list")
def list_nodes(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None,
               job: NameArg = None, workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None,
               job_opt: JobOpt = None, group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the nodes running a job, with their addresses (listRemoteLoginInformation)."""
    s = session(ctx)
    ws, exp, name = names(workspace, workspace_opt, experiment, experiment_opt, job, job_opt, "--job/-j")
    nodes = s.client.jobs.list_remote_login_information(s.resource_group(group), ws, exp, name)
    show_list(nodes, NODE_COLUMNS, output_format(ctx, output), title=f"Nodes of {ws}/{exp}/{name}")


@node_app.command("exec")
def exec_on_node(ctx: typer.Context, workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None,
                 job_opt: JobOpt = None, node_id: node_exec.NodeIdOpt = None, command: node_exec.ExecOpt = None,
                 address: node_exec.AddressOpt = None, password: node_exec.PasswordOpt = None,
                 key: node_exec.KeyOpt = None, group: GroupOpt = None) -> None:
    """Run a command on a node of a job (--exec: in the job's environment there when the node has no sshd),
    or forward ports through it (-L); exits with the command's code."""
    s = session(ctx)
    ws, exp, name = names(None, workspace_opt, None, experiment_opt, None, job_opt, "--job/-j")
    raise typer.Exit(node_exec.run(s, s.resource_group(group), ws, "", node_id, command, address or [], password,
                                   key, job=(exp, name)))


def exit_code_of(job: models.Job) -> int:
    """The job's own exit code; 1 for a failed job that has none (terminated, never started)."""
    code = job.execution_info.exit_code if job.execution_info else None
    if code is not None:
        return int(code)
    return 0 if job.execution_state == "succeeded" else 1


@app.command("wait")
def wait(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None, name: NameArg = None,
         workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, name_opt: NameOpt = None,
         timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 124).")] = None,
         interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
         group: GroupOpt = None) -> None:
    """Wait until the job succeeds or fails; exit with the job's exit code."""
    s = session(ctx)
    rg = s.resource_group(group)
    ws, exp, job_name = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt)
    deadline = None if timeout is None else time.monotonic() + timeout
    last_state = None
    while True:
        job = s.client.jobs.get(rg, ws, exp, job_name)
        if job.execution_state != last_state:
            message(f"job {job_name}: {job.execution_state}")
            last_state = job.execution_state
        if job.execution_state in ENDED:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise CliError(f"job {job_name} is still {job.execution_state} after {timeout:g} s", exit_code=124)
        time.sleep(interval)
    for error in (job.execution_info.errors if job.execution_info else None) or []:
        message(f"  {error.code}: {error.message}")
    code = exit_code_of(job)
    message(f"job {job_name} {job.execution_state} (exit code {code})")
    raise typer.Exit(code)
