"""`batchai cluster node exec` and `batchai job node exec`, with `az batchai`'s flags: run a command on a
node (or forward ports through it).

A node with a login address (listRemoteLoginInformation: machines, scale-set instances) is reached over
ssh as the cluster's admin user, as `az batchai` did: with `--ssh-private-key` (default: the local
stack's own key when it has one, else ssh's defaults) or `--password`, and `-L` forwards. A node without
one (a local process) runs the command through its agent: the service records the request and sends it
to the node (`POST .../nodes/{id}/exec`, allowed with the cluster's or job's
remoteLoginInformation/action), and the command's stdout, stderr and exit code come back here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, map_error
from azure.core.rest import HttpRequest
from azure.mgmt.batchai import BatchAI
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.tools import parse_resource_id

from shared.cli.arm import workspace_path
from shared.cli.context import CliError, Session
from shared.domain.contract import API_VERSION

NodeIdOpt = Annotated[str | None, typer.Option("--node-id", "-n", help="The node (default: the first one).")]
ExecOpt = Annotated[str | None, typer.Option("--exec", help="The command line to run on the node.")]
AddressOpt = Annotated[list[str] | None, typer.Option(
    "--address", "-L", help="Forward a local port through the node: port:host:hostport, as ssh -L takes it.")]
PasswordOpt = Annotated[str | None, typer.Option("--password", "-p", help="The admin user's password (ssh).")]
KeyOpt = Annotated[str | None, typer.Option("--ssh-private-key", "-k",
                                            help="The admin user's private key (default: the local stack's).")]
TIMEOUT_S = 600  # how long a command through a node's agent may run
ERRORS = {401: ClientAuthenticationError, 404: ResourceNotFoundError}


def run(s: Session, group: str, workspace: str, target: str, node_id: str | None, command: str | None,
        forwards: list[str], password: str | None, key: str | None, job: tuple[str, str] | None = None) -> int:
    """Run `command` (or forward `forwards`) on a node of cluster `target` (or of `job`: experiment, name)."""
    if not command and not forwards:
        raise CliError("nothing to do: pass --exec and/or --address/-L", exit_code=2)
    client = s.client
    if job is None:
        logins = list(client.clusters.list_remote_login_information(group, workspace, target))
        cluster_name = target
    else:
        logins = list(client.jobs.list_remote_login_information(group, workspace, *job))
        found = client.jobs.get(group, workspace, *job)
        cluster_name = parse_resource_id(found.cluster.id)["resource_name"]
    if not logins:
        raise CliError("no nodes to run on")
    login = next((n for n in logins if n.node_id == node_id), None) if node_id else logins[0]
    if login is None:
        raise CliError(f"no node {node_id!r} here: {', '.join(n.node_id for n in logins)}")
    if login.ip_address and login.port:
        admin = client.clusters.get(group, workspace, cluster_name).user_account_settings.admin_user_name
        return over_ssh(login.ip_address, int(login.port), admin, command, forwards, password,
                        key or default_key(s))
    if forwards:
        raise CliError(f"node {login.node_id} has no sshd to forward ports through (a local process node)")
    assert command is not None
    path = f"{workspace_path(client, group, workspace)}/"
    path += f"clusters/{target}" if job is None else f"experiments/{job[0]}/jobs/{job[1]}"
    return through_agent(client, f"{path}/nodes/{login.node_id}", command)


def default_key(s: Session) -> str | None:
    key = s.stack_state_dir / "local" / "ssh" / "id_ed25519"
    return str(key) if key.is_file() else None


def ssh_argv(address: str, port: int, user: str, command: str | None, forwards: list[str],
             key: str | None) -> list[str]:
    # Nodes come and go with new host keys on the same addresses: no known_hosts entries (as on the nodes).
    argv = ["ssh", "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR"]
    if key:
        argv += ["-i", key, "-o", "IdentitiesOnly=yes"]
    for forward in forwards:
        argv += ["-L", forward]
    if not command:
        argv.append("-N")  # forward until interrupted
    argv.append(f"{user}@{address}")
    return [*argv, "--", command] if command else argv


def over_ssh(address: str, port: int, user: str, command: str | None, forwards: list[str],
             password: str | None, key: str | None) -> int:
    argv = ssh_argv(address, port, user, command, forwards, None if password else key)
    if not password:
        return subprocess.run(argv, check=False).returncode
    # ssh reads a password only from a terminal or an askpass program: this one hands it over.
    with tempfile.TemporaryDirectory() as tmp:
        askpass = Path(tmp) / "askpass"
        askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$BATCHAI_SSH_PASSWORD"\n')
        askpass.chmod(0o700)
        env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
               "BATCHAI_SSH_PASSWORD": password}
        return subprocess.run([*argv[:1], "-o", "PubkeyAuthentication=no", *argv[1:]], check=False,
                              env=env, stdin=subprocess.DEVNULL).returncode


def _send(client: BatchAI, method: str, path: str, body: Any = None) -> dict[str, Any]:
    url = client._client.format_url(path)
    request = HttpRequest(method, url, params={"api-version": API_VERSION}, json=body)
    response = client._client.send_request(request, _return_pipeline_response=True).http_response
    if response.status_code not in (200, 202):
        map_error(status_code=response.status_code, response=response, error_map=ERRORS)
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    result: dict[str, Any] = response.json()
    return result


def through_agent(client: BatchAI, node_path: str, command: str, interval_s: float = 0.5) -> int:
    """The command run by the node's agent: its output printed here, its exit code returned."""
    started = _send(client, "POST", f"{node_path}/exec", {"command": command, "timeoutSeconds": TIMEOUT_S})
    deadline = time.monotonic() + TIMEOUT_S + 120
    result = started
    while result["status"] == "InProgress":
        if time.monotonic() > deadline:
            raise CliError(f"the node did not answer command {started['name']} in time")
        time.sleep(interval_s)
        result = _send(client, "GET", f"{node_path}/execs/{started['name']}")
    sys.stdout.write(result.get("stdout") or "")
    sys.stderr.write(result.get("stderr") or "")
    sys.stdout.flush()
    if result["status"] != "Succeeded":
        error = result.get("error") or {}
        raise CliError(f"the command did not run on the node: {error.get('message') or result['status']}")
    return int(result["exitCode"]) if result.get("exitCode") is not None else 1
