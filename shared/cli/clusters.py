"""`batchai cluster ...`: create (flags, a Batch AI cluster file, or both), list, show, resize, auto-scale,
delete clusters, with `az batchai cluster` flags; `cluster node` and `cluster file` are in cluster_nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from azure.mgmt.batchai import models

from shared.cli import arm, cluster_nodes, cluster_params, mounts
from shared.cli.accounts import GenerateKeysOpt, PasswordOpt, SshKeyOpt, UserOpt, user_account
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
from shared.cli.context import CliError
from shared.cli.output import message, show_list, show_one
from shared.cli.specfiles import cluster_model, load_cluster_file

app = typer.Typer(help="Clusters: the nodes that jobs run on.", no_args_is_help=True)
app.add_typer(cluster_nodes.node_app, name="node")
app.add_typer(cluster_nodes.file_app, name="file")

WorkspaceArg = Annotated[str | None, typer.Argument(help="Workspace name (or -w).", show_default=False)]
NameArg = Annotated[str | None, typer.Argument(help="Cluster name (or -n).", show_default=False)]
WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name.")]
NameOpt = Annotated[str | None, typer.Option("--name", "-n", help="Cluster name.")]
TargetOpt = Annotated[int | None, typer.Option(
    "--target", "-t", min=0, help="Manual scale: this many nodes; with --min/--max: the initial node count.")]
MinOpt = Annotated[int | None, typer.Option("--min", min=0, help="Auto scale: minimum node count.")]
MaxOpt = Annotated[int | None, typer.Option("--max", min=0, help="Auto scale: maximum node count.")]
DeallocOpt = Annotated[str | None, typer.Option(
    "--node-deallocation-option", help="Manual scale-down: requeue, terminate or waitforjobcompletion.")]


def names(workspace: str | None, workspace_opt: str | None, name: str | None, name_opt: str | None) -> tuple[str, str]:
    return (pick("the workspace", workspace, workspace_opt, "--workspace/-w"),
            pick("the cluster name", name, name_opt, "--name/-n"))


def scale_label(c: models.Cluster) -> str:
    s = c.scale_settings
    if s is None:
        return ""
    if s.auto_scale is not None:
        return f"auto {s.auto_scale.minimum_node_count}..{s.auto_scale.maximum_node_count}"
    if s.manual is not None:
        return f"manual {s.manual.target_node_count}"
    return ""


def node_counts(c: models.Cluster) -> str:
    n = c.node_state_counts
    if n is None:
        return ""
    return (f"idle {n.idle_node_count or 0}, running {n.running_node_count or 0}, "
            f"preparing {n.preparing_node_count or 0}, unusable {n.unusable_node_count or 0}, "
            f"leaving {n.leaving_node_count or 0}")


COLUMNS = [
    ("Name", lambda c: c.name),
    ("VM size", lambda c: c.vm_size),
    ("Priority", lambda c: c.vm_priority),
    ("Scale", scale_label),
    ("Allocation", lambda c: c.allocation_state),
    ("Nodes", lambda c: c.current_node_count),
    ("Node states", node_counts),
    ("State", lambda c: c.provisioning_state),
]


@app.command("create")
def create(
    ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
    workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None,
    file: Annotated[Path | None, typer.Option("--config-file", "--file", "-f",
                                              help="A Batch AI cluster file (cluster.json).")] = None,
    vm_size: Annotated[str | None, typer.Option("--vm-size", "-s", help="VM size, e.g. STANDARD_NC6.")] = None,
    vm_priority: Annotated[str | None, typer.Option("--vm-priority", help="dedicated or lowpriority.")] = None,
    target: TargetOpt = None, minimum: MinOpt = None, maximum: MaxOpt = None,
    image: Annotated[str | None, typer.Option("--image", "-i", help=(
        f"OS image: {' or '.join(cluster_params.IMAGE_ALIASES)}, or publisher:offer:sku:version."))] = None,
    custom_image: Annotated[str | None, typer.Option(
        "--custom-image", help="ARM id of a VM image built from the --image base image.")] = None,
    subnet: Annotated[str | None, typer.Option("--subnet", help="ARM id of the subnet to put the nodes in.")] = None,
    setup_task: Annotated[str | None, typer.Option(
        "--setup-task", help="Command line run by bash on every node as it joins.", rich_help_panel="Setup Task")]
    = None,
    setup_task_output: Annotated[str | None, typer.Option(
        "--setup-task-output", help="Where the setup task's output goes, e.g. $AZ_BATCHAI_MOUNT_ROOT/afs.",
        rich_help_panel="Setup Task")] = None,
    nfs: mounts.NfsOpt = None, nfs_mount_path: mounts.NfsPathOpt = "nfs",
    afs_name: mounts.AfsOpt = None, afs_mount_path: mounts.AfsPathOpt = "afs",
    bfs_name: mounts.BfsOpt = None, bfs_mount_path: mounts.BfsPathOpt = "bfs",
    storage_name: StorageNameOpt = None, storage_key: StorageKeyOpt = None,
    user: UserOpt = None, password: PasswordOpt = None, ssh_key: SshKeyOpt = None,
    generate_ssh_keys: GenerateKeysOpt = False, group: GroupOpt = None, output: OutputOpt = None,
    packing: Annotated[str | None, typer.Option(
        "--packing", help="whole-node (a job gets whole nodes: the default) or gpu-slots (jobs share nodes, "
                          "each with its own GPUs).")] = None,
) -> None:
    """Create a cluster from flags, a cluster file, or both (flags win). Default scale: manual, 1 node."""
    s = session(ctx)
    rg = s.resource_group(group)
    ws, cluster = names(workspace, workspace_opt, name, name_opt)
    account = storage_account(ctx, storage_name, storage_key)
    doc: dict[str, Any] = load_cluster_file(file, account) if file is not None else {"properties": {}}
    props = doc["properties"]
    if vm_size:
        props["vmSize"] = vm_size
    if vm_priority:
        props["vmPriority"] = vm_priority
    scale = cluster_params.scale_settings(target, minimum, maximum)
    props["scaleSettings"] = scale or props.get("scaleSettings") or {"manual": {"targetNodeCount": 1}}
    if not props.get("vmSize"):
        raise CliError("no VM size: pass --vm-size or set properties.vmSize in the cluster file", exit_code=2)
    reference = cluster_params.image_reference(image, custom_image)
    if reference is not None:
        props["virtualMachineConfiguration"] = {"imageReference": reference}
    if subnet:
        props["subnet"] = {"id": subnet}
    task = cluster_params.setup_task(setup_task, setup_task_output)
    flags = mounts.MountFlags(nfs, nfs_mount_path, afs_name, afs_mount_path, bfs_name, bfs_mount_path)
    if task is not None or flags.any():
        node_setup = props.setdefault("nodeSetup", {})
        if task is not None:
            node_setup["setupTask"] = task
        node_setup["mountVolumes"] = mounts.add_mounts(
            node_setup.get("mountVolumes"), flags, account, lambda fs: arm.file_server_id(s.client, rg, ws, fs))
        if node_setup["mountVolumes"] is None:
            del node_setup["mountVolumes"]
    props["userAccountSettings"] = user_account(props.get("userAccountSettings"), user, password, ssh_key,
                                                generate_ssh_keys)
    params = cluster_model(doc, file or "cluster flags")
    packing = packing or props.get("packing")
    extra = {"packing": packing} if packing else {}
    created = s.client.clusters.begin_create(rg, ws, cluster, params,
                                             raw_request_hook=arm.properties_hook(extra)).result()
    show_one(created, output_format(ctx, output))


def _update(ctx: typer.Context, group: str | None, ws: str, cluster: str, scale: dict[str, Any],
            output: str | None) -> None:
    s = session(ctx)
    params = cluster_model({"properties": {"scaleSettings": scale}}, "scale flags")
    updated = s.client.clusters.update(s.resource_group(group), ws, cluster,
                                       models.ClusterUpdateParameters(scale_settings=params.scale_settings))
    show_one(updated, output_format(ctx, output))


@app.command("resize")
def resize(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
           workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, target: TargetOpt = None,
           minimum: MinOpt = None, maximum: MaxOpt = None, deallocation: DeallocOpt = None,
           group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Manual scale to --target N nodes (or auto scale with --min and --max)."""
    ws, cluster = names(workspace, workspace_opt, name, name_opt)
    if target is None and minimum is None and maximum is None:
        raise CliError("pass --target N, or --min and --max", exit_code=2)
    if minimum is not None or maximum is not None:
        scale = auto_scale(minimum, maximum)
        if target is not None:
            scale["autoScale"]["initialNodeCount"] = target
    else:
        scale = cluster_params.scale_settings(target, None, None, deallocation) or {}
    _update(ctx, group, ws, cluster, scale, output)


def auto_scale(minimum: int | None, maximum: int | None) -> dict[str, Any]:
    if minimum is None or maximum is None:
        raise CliError("auto scale needs both --min and --max", exit_code=2)
    if minimum > maximum:
        raise CliError(f"--min {minimum} is greater than --max {maximum}", exit_code=2)
    return {"autoScale": {"minimumNodeCount": minimum, "maximumNodeCount": maximum}}


@app.command("auto-scale")
def set_auto_scale(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
                   workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, minimum: MinOpt = None,
                   maximum: MaxOpt = None, group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Auto scale between --min and --max nodes, following queued and running jobs."""
    ws, cluster = names(workspace, workspace_opt, name, name_opt)
    _update(ctx, group, ws, cluster, auto_scale(minimum, maximum), output)


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg = None, workspace_opt: WorkspaceOpt = None,
          group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the clusters of a workspace."""
    s = session(ctx)
    ws = pick("the workspace", workspace, workspace_opt, "--workspace/-w")
    show_list(s.client.clusters.list_by_workspace(s.resource_group(group), ws), COLUMNS,
              output_format(ctx, output), title=f"Clusters in {ws}")


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
         workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, group: GroupOpt = None,
         output: OutputOpt = None) -> None:
    """Show a cluster, with its allocation state and node counts."""
    s = session(ctx)
    ws, cluster = names(workspace, workspace_opt, name, name_opt)
    show_one(s.client.clusters.get(s.resource_group(group), ws, cluster, cls=arm.as_sent), output_format(ctx, output))


@app.command("delete")
def delete(ctx: typer.Context, workspace: WorkspaceArg = None, name: NameArg = None,
           workspace_opt: WorkspaceOpt = None, name_opt: NameOpt = None, group: GroupOpt = None,
           yes: YesOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Delete a cluster (its queued jobs fail, its running jobs are stopped)."""
    s = session(ctx)
    ws, cluster = names(workspace, workspace_opt, name, name_opt)
    confirm(yes, f"Delete cluster {ws}/{cluster}?")
    poller = s.client.clusters.begin_delete(s.resource_group(group), ws, cluster, polling=not no_wait)
    if no_wait:
        message(f"deleting cluster {ws}/{cluster}")
        return
    poller.result()
    message(f"deleted cluster {ws}/{cluster}")
