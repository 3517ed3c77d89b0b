"""`batchai cluster node list` (the nodes' addresses), `batchai cluster node exec` (a command on a node, see
shared.cli.node_exec) and `batchai cluster file list` (the node setup task's
output: a directory per node, with download URLs), with `az batchai cluster node/file` flags."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli import arm, node_exec
from shared.cli.common import GroupOpt, OutputOpt, output_format, pick, session
from shared.cli.output import show_list

node_app = typer.Typer(help="A cluster's nodes.", no_args_is_help=True)
file_app = typer.Typer(help="A cluster's node setup task output.", no_args_is_help=True)

WorkspaceArg = Annotated[str | None, typer.Argument(help="Workspace name (or -w).", show_default=False)]
ClusterArg = Annotated[str | None, typer.Argument(help="Cluster name (or -c).", show_default=False)]
WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name.")]
ClusterOpt = Annotated[str | None, typer.Option("--cluster", "-c", help="Cluster name.")]

NODE_COLUMNS = [
    ("Node", lambda n: n.node_id),
    ("Address", lambda n: n.ip_address),
    ("SSH port", lambda n: n.port),
]

FILE_COLUMNS = [
    ("Name", lambda f: f.name),
    ("Is directory", lambda f: "yes" if f.file_type == "directory" else "no"),
    ("Size", lambda f: f.content_length),
    ("Modified", lambda f: f.last_modified),
    ("URL", lambda f: f.download_url),
]


def names(workspace: str | None, workspace_opt: str | None, cluster: str | None,
          cluster_opt: str | None) -> tuple[str, str]:
    return (pick("the workspace", workspace, workspace_opt, "--workspace/-w"),
            pick("the cluster", cluster, cluster_opt, "--cluster/-c"))


@node_app.command("list")
def list_nodes(ctx: typer.Context, workspace: WorkspaceArg = None, cluster: ClusterArg = None,
               workspace_opt: WorkspaceOpt = None, cluster_opt: ClusterOpt = None, group: GroupOpt = None,
               output: OutputOpt = None) -> None:
    """List a cluster's nodes with their addresses (listRemoteLoginInformation)."""
    s = session(ctx)
    ws, name = names(workspace, workspace_opt, cluster, cluster_opt)
    nodes = s.client.clusters.list_remote_login_information(s.resource_group(group), ws, name)
    show_list(nodes, NODE_COLUMNS, output_format(ctx, output), title=f"Nodes of {ws}/{name}")


@node_app.command("exec")
def exec_on_node(ctx: typer.Context, workspace_opt: WorkspaceOpt = None, cluster_opt: ClusterOpt = None,
                 node_id: node_exec.NodeIdOpt = None, command: node_exec.ExecOpt = None,
                 address: node_exec.AddressOpt = None, password: node_exec.PasswordOpt = None,
                 key: node_exec.KeyOpt = None, group: GroupOpt = None) -> None:
    """Run a command on a node (--exec), or forward ports through it (-L); exits with the command's code."""
    s = session(ctx)
    ws, name = names(None, workspace_opt, None, cluster_opt)
    raise typer.Exit(node_exec.run(s, s.resource_group(group), ws, name, node_id, command, address or [],
                                   password, key))


@file_app.command("list")
def list_files(ctx: typer.Context, workspace: WorkspaceArg = None, cluster: ClusterArg = None,
               workspace_opt: WorkspaceOpt = None, cluster_opt: ClusterOpt = None,
               path: Annotated[str, typer.Option("--path", "-p", help=(
                   "A directory of the setup task output: a node id, or a path under one."))] = ".",
               expiry: Annotated[int, typer.Option("--expiry", min=5, max=600,
                                                   help="Minutes the download URLs stay valid.")] = 60,
               group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the node setup task's output: a directory per node (its stdout.txt and stderr.txt)."""
    s = session(ctx)
    ws, name = names(workspace, workspace_opt, cluster, cluster_opt)
    files = arm.list_node_setup_files(s.client, s.resource_group(group), ws, name, path, expiry)
    show_list(files, FILE_COLUMNS, output_format(ctx, output), title=f"Setup task output of {ws}/{name}")
