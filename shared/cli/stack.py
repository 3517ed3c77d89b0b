"""`batchai stack up|down|status|token`: the embedded local stack (Azurite, trigger host, local nodes) and
tokens for its principals."""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from shared.cli.common import session
from shared.cli.context import CliError, as_mapping
from shared.cli.output import message, out, print_json

app = typer.Typer(help="The local stack: Azurite, the local trigger host and local nodes.", no_args_is_help=True)

SHOWN = ("url", "topology", "subscription_id", "resource_group", "ca_file")


def describe(endpoint: dict[str, Any], endpoint_file: Path) -> None:
    for key in SHOWN:
        if endpoint.get(key):
            out().print(f"{key:16} {endpoint[key]}")
    out().print(f"{'endpoint file':16} {endpoint_file}")


def answers(endpoint: dict[str, Any]) -> str | None:
    """None when the API answers at its url; else why not."""
    try:
        tls = ssl.create_default_context(cafile=endpoint.get("ca_file"))
        httpx.get(f"{endpoint['url'].rstrip('/')}/healthz", verify=tls, timeout=5)
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}"
    return None


StateDirOpt = Annotated[Path | None, typer.Option("--state-dir", help="The stack's state directory.")]


def _state_dir(ctx: typer.Context, state_dir: Path | None) -> Path:
    return (state_dir or session(ctx).stack_state_dir).resolve()


class Topology(StrEnum):
    processes = "processes"
    machines = "machines"


@app.command("up")
def up(ctx: typer.Context, state_dir: StateDirOpt = None,
       topology: Annotated[Topology, typer.Option(
           help="processes: every node an agent process here; machines: nodes are machines booted by cloud-init "
                "from the scale-set provider's custom data, on a local ARM emulator (needs podman)")]
       = Topology.processes) -> None:
    """Start the local stack in the background (or report the one that runs) and write its endpoint file."""
    from shared.localstack.stack import start_stack

    directory = _state_dir(ctx, state_dir)
    endpoint = as_mapping(start_stack(directory, topology=topology.value))
    for notice in endpoint.get("notices") or []:  # e.g. storage that did not stop cleanly: what may be lost
        message(f"warning: {notice}")
    message(f"local stack up (state in {directory}); stop it with `batchai stack down`")
    describe(endpoint, directory / "local" / "endpoint.json")


@app.command("down")
def down(ctx: typer.Context, state_dir: StateDirOpt = None) -> None:
    """Stop the local stack: the trigger host, its nodes and Azurite."""
    from shared.localstack.stack import stop_stack

    directory = _state_dir(ctx, state_dir)
    stop_stack(directory)
    message(f"local stack down (state kept in {directory})")


@app.command("status")
def status(ctx: typer.Context, state_dir: StateDirOpt = None) -> None:
    """Show the local stack's endpoint, its processes and whether its API answers; exit 1 when it is not up."""
    from shared.localstack.stack import stack_status

    directory = _state_dir(ctx, state_dir)
    state = stack_status(directory)
    endpoint = as_mapping(state.get("endpoint"))
    if not state.get("running") or not endpoint:
        raise CliError(f"local stack is not running (state in {directory}); start it with `batchai stack up`")
    describe(endpoint, directory / "local" / "endpoint.json")
    for name, pid in (state.get("processes") or {}).items():
        out().print(f"{name:16} pid {pid}")
    problem = answers(endpoint)
    if problem:
        raise CliError(f"local stack is not answering at {endpoint.get('url')}: {problem}")
    out().print(f"{'api':16} up")


@app.command("token")
def token(ctx: typer.Context,
          principal: Annotated[str, typer.Option("--principal", help="The user the token is for (a name).")],
          group: Annotated[list[str] | None, typer.Option(
              "--group", help="A group the user is a member of (a name; repeatable).")] = None,
          lifetime: Annotated[int, typer.Option("--lifetime", min=60, max=30 * 86400,
                                                help="Seconds the token is valid.")] = 3600,
          state_dir: StateDirOpt = None,
          output: Annotated[str | None, typer.Option("--output", "-o", help="table (the bare token) or json "
                                                                          "(as `az account get-access-token`).")]
          = None) -> None:
    """Print an access token for a principal of the local stack, signed by the stack's issuer.

    Its object id is what `batchai role assignment create --assignee NAME` assigns roles to."""
    from shared.cli.common import output_format
    from shared.domain.principals import USER, local_object_id
    from shared.emulator.issuer import KEY_FILE
    from shared.localstack.endpoint import read_endpoint_file
    from shared.localstack.token import issuer_dir, principal_token, stack_issuer

    directory = _state_dir(ctx, state_dir)
    stack = read_endpoint_file(directory)
    issuer_url = str(session(ctx).endpoint.get("issuer") or "")
    if stack is None or not stack.issuer or not (issuer_dir(directory) / KEY_FILE).exists():
        raise CliError(f"no local stack issuer under {directory}: start the stack (`batchai stack up`)")
    if issuer_url != stack.issuer:
        raise CliError(f"the endpoint's issuer {issuer_url or '(none)'} is not the local stack's ({stack.issuer}): "
                       "tokens for it come from its own identity provider")
    issuer = stack_issuer(directory, stack.issuer)
    now = time.time()
    signed = principal_token(issuer, principal, group or (), lifetime, now=now)
    if output_format(ctx, output) != "json":
        typer.echo(signed)
        return
    expires = int(now) + lifetime
    print_json({"accessToken": signed, "expiresOn": datetime.fromtimestamp(expires, UTC).isoformat(),
                "expires_on": expires, "tenant": issuer.tenant_id, "tokenType": "Bearer",
                "objectId": local_object_id(issuer.tenant_id, USER, principal)})
