"""`batchai cluster ...`: create (flags or a Batch AI cluster file), list, show, resize, delete clusters."""

from __future__ import annotations

import getpass
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from azure.mgmt.batchai import models

from shared.cli.common import (
    GroupOpt,
    OutputOpt,
    StorageKeyOpt,
    StorageNameOpt,
    output_format,
    session,
    storage_account,
)
from shared.cli.context import CliError
from shared.cli.output import message, show_list, show_one
from shared.cli.specfiles import cluster_model, load_cluster_file

app = typer.Typer(help="Clusters: the nodes that jobs run on.", no_args_is_help=True)

WorkspaceArg = Annotated[str, typer.Argument(help="Workspace name.")]
NameArg = Annotated[str, typer.Argument(help="Cluster name.")]
TargetOpt = Annotated[int | None, typer.Option("--target", "-t", min=0, help="Manual scale: this many nodes.")]
MinOpt = Annotated[int | None, typer.Option("--min", min=0, help="Auto scale: minimum node count.")]
MaxOpt = Annotated[int | None, typer.Option("--max", min=0, help="Auto scale: maximum node count.")]
InitialOpt = Annotated[int | None, typer.Option("--initial", min=0, help="Auto scale: initial node count.")]
DeallocOpt = Annotated[str | None, typer.Option(
    "--node-deallocation-option", help="Manual scale-down: requeue, terminate or waitforjobcompletion.")]


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


def scale_settings(target: int | None, minimum: int | None, maximum: int | None, initial: int | None,
                   deallocation: str | None) -> dict[str, Any] | None:
    """The REST `scaleSettings` the flags ask for, or None when they ask for nothing."""
    auto = minimum is not None or maximum is not None or initial is not None
    if target is not None and auto:
        raise CliError("use either --target (manual scale) or --min/--max (auto scale), not both", exit_code=2)
    if target is not None:
        manual: dict[str, Any] = {"targetNodeCount": target}
        if deallocation:
            manual["nodeDeallocationOption"] = deallocation
        return {"manual": manual}
    if auto:
        if minimum is None or maximum is None:
            raise CliError("auto scale needs both --min and --max", exit_code=2)
        if minimum > maximum:
            raise CliError(f"--min {minimum} is greater than --max {maximum}", exit_code=2)
        auto_scale = {"minimumNodeCount": minimum, "maximumNodeCount": maximum}
        if initial is not None:
            auto_scale["initialNodeCount"] = initial
        return {"autoScale": auto_scale}
    return None


def default_ssh_key() -> str | None:
    for name in ("id_ed25519.pub", "id_rsa.pub"):
        path = Path.home() / ".ssh" / name
        if path.is_file():
            return path.read_text().strip()
    return None


def user_account(existing: dict[str, Any] | None, user: str | None, password: str | None,
                 ssh_key: str | None) -> dict[str, Any]:
    account = dict(existing or {})
    if user:
        account["adminUserName"] = user
    account.setdefault("adminUserName", getpass.getuser())
    if password:
        account["adminUserPassword"] = password
    if ssh_key:
        key_path = Path(ssh_key).expanduser()
        account["adminUserSshPublicKey"] = key_path.read_text().strip() if key_path.is_file() else ssh_key
    if not account.get("adminUserPassword") and not account.get("adminUserSshPublicKey"):
        key = default_ssh_key()
        if key:
            account["adminUserSshPublicKey"] = key
        else:
            account["adminUserPassword"] = secrets.token_urlsafe(18)
            message("no --password or --ssh-key given and no ~/.ssh key found: generated an admin password")
    return account


@app.command("create")
def create(
    ctx: typer.Context, workspace: WorkspaceArg, name: NameArg,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A Batch AI cluster file (cluster.json).")] = None,
    vm_size: Annotated[str | None, typer.Option("--vm-size", "-s", help="VM size, e.g. STANDARD_NC6.")] = None,
    vm_priority: Annotated[str | None, typer.Option("--vm-priority", help="dedicated or lowpriority.")] = None,
    target: TargetOpt = None, minimum: MinOpt = None, maximum: MaxOpt = None, initial: InitialOpt = None,
    user: Annotated[str | None, typer.Option("--user-name", "-u", help="Admin user on the nodes.")] = None,
    password: Annotated[str | None, typer.Option("--password", "-p", help="Admin user password.")] = None,
    ssh_key: Annotated[str | None, typer.Option("--ssh-key", "-k", help="Admin SSH public key or its file.")] = None,
    storage_name: StorageNameOpt = None, storage_key: StorageKeyOpt = None,
    group: GroupOpt = None, output: OutputOpt = None,
) -> None:
    """Create a cluster from flags, a cluster file, or both (flags win). Default scale: manual, 1 node."""
    s = session(ctx)
    doc: dict[str, Any] = {"properties": {}}
    if file is not None:
        doc = load_cluster_file(file, storage_account(ctx, storage_name, storage_key))
    props = doc["properties"]
    if vm_size:
        props["vmSize"] = vm_size
    if vm_priority:
        props["vmPriority"] = vm_priority
    scale = scale_settings(target, minimum, maximum, initial, None)
    if scale is not None:
        props["scaleSettings"] = scale
    props.setdefault("scaleSettings", {"manual": {"targetNodeCount": 1}})
    if not props.get("vmSize"):
        raise CliError("no VM size: pass --vm-size or set properties.vmSize in the cluster file", exit_code=2)
    props["userAccountSettings"] = user_account(props.get("userAccountSettings"), user, password, ssh_key)
    params = cluster_model(doc, file or "cluster flags")
    cluster = s.client.clusters.begin_create(s.resource_group(group), workspace, name, params).result()
    show_one(cluster, output_format(ctx, output))


@app.command("resize")
def resize(ctx: typer.Context, workspace: WorkspaceArg, name: NameArg, target: TargetOpt = None,
           minimum: MinOpt = None, maximum: MaxOpt = None, initial: InitialOpt = None,
           deallocation: DeallocOpt = None, group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Change a cluster's scale settings: --target N (manual) or --min/--max (auto)."""
    s = session(ctx)
    scale = scale_settings(target, minimum, maximum, initial, deallocation)
    if scale is None:
        raise CliError("pass --target N, or --min and --max", exit_code=2)
    params = cluster_model({"properties": {"scaleSettings": scale}}, "resize flags")
    update = models.ClusterUpdateParameters(scale_settings=params.scale_settings)
    cluster = s.client.clusters.update(s.resource_group(group), workspace, name, update)
    show_one(cluster, output_format(ctx, output))


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg, group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the clusters of a workspace."""
    s = session(ctx)
    show_list(s.client.clusters.list_by_workspace(s.resource_group(group), workspace), COLUMNS,
              output_format(ctx, output), title=f"Clusters in {workspace}")


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg, name: NameArg, group: GroupOpt = None,
         output: OutputOpt = None) -> None:
    """Show a cluster, with its allocation state and node counts."""
    s = session(ctx)
    show_one(s.client.clusters.get(s.resource_group(group), workspace, name), output_format(ctx, output))


@app.command("delete")
def delete(ctx: typer.Context, workspace: WorkspaceArg, name: NameArg, group: GroupOpt = None) -> None:
    """Delete a cluster (its queued jobs fail, its running jobs are stopped)."""
    s = session(ctx)
    s.client.clusters.begin_delete(s.resource_group(group), workspace, name).result()
    message(f"deleted cluster {workspace}/{name}")
