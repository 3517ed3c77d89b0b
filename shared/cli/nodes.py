"""`batchai node ...`: list a cluster's nodes, and simulate a Spot preemption of a local node."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.cli.common import GroupOpt, OutputOpt, output_format, session
from shared.cli.context import CliError
from shared.cli.output import message, show_list

app = typer.Typer(help="Cluster nodes.", no_args_is_help=True)

COLUMNS = [
    ("Node", lambda n: n.node_id),
    ("Address", lambda n: n.ip_address),
    ("Port", lambda n: n.port),
]


@app.command("list")
def list_(ctx: typer.Context, workspace: Annotated[str, typer.Argument(help="Workspace name.")],
          cluster: Annotated[str, typer.Argument(help="Cluster name.")], group: GroupOpt = None,
          output: OutputOpt = None) -> None:
    """List a cluster's nodes with their addresses (listRemoteLoginInformation)."""
    s = session(ctx)
    nodes = s.client.clusters.list_remote_login_information(s.resource_group(group), workspace, cluster)
    show_list(nodes, COLUMNS, output_format(ctx, output), title=f"Nodes of {workspace}/{cluster}")


def cluster_matches(cluster_key: str, cluster: str, workspace: str | None) -> bool:
    """cluster_key is "{sub}|{rg}|{ws}|{cluster}"."""
    parts = cluster_key.lower().split("|")
    return parts[-1] == cluster.lower() and (workspace is None or parts[-2] == workspace.lower())


@app.command("preempt")
def preempt(ctx: typer.Context,
            cluster: Annotated[str, typer.Argument(help="Cluster name (or WORKSPACE/CLUSTER).")],
            node: Annotated[str, typer.Argument(help="Node id (see `batchai node list`).")],
            workspace: Annotated[str | None, typer.Option("--workspace", "-w", help="The cluster's workspace.")]
            = None) -> None:
    """Simulate a Spot preemption of a node of the local stack: its agent gets the eviction notice."""
    from shared.adapters.compute.local import LocalProvider

    if "/" in cluster:
        workspace, cluster = cluster.split("/", 1)
    s = session(ctx)
    conn = s.endpoint.get("storage_connection_string") or ""
    provider = LocalProvider(s.stack_state_dir, conn)
    keys = [k for k in provider.clusters() if cluster_matches(k, cluster, workspace)]
    if not keys:
        raise CliError(f"no local cluster {cluster!r} has nodes under {s.stack_state_dir}")
    owned = [k for k in keys if any(i.node_id == node for i in provider.list_instances(k))]
    if not owned:
        raise CliError(f"node {node!r} is not a node of local cluster {cluster!r}")
    if not provider.preempt(node):
        raise CliError(f"node {node!r} is not running")
    message(f"sent the preemption notice to node {node} of {cluster}")
