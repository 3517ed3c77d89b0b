"""Bring-your-own nodes end to end: `batchai node join` on a machine that no provider started makes it a
node of a bring-your-own cluster; it runs a job; once its join token is revoked its credential is
refused (401), the service reports the node gone, and the next job waits for, then runs on, another
machine that joined with a new token.

Processes: the machines are this one (two install directories, each agent a detached process). Machines:
a container of the stack's own image on the stack's podman network, not part of any scale set, where
the CLI is installed from the service's wheelhouse and runs the agent as a systemd service.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.agent.joined import REFUSED_EXIT
from shared.cli.node_join import previous_agent
from tests.e2e.conftest import Stack
from tests.polling import wait_until

WS, EXP, CLUSTER = "byo", "jobs", "own"
API = "api-version=2018-05-01"


def arm(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.endpoint["url"], timeout=60,
                        verify=ssl.create_default_context(cafile=stack.endpoint["ca_file"]),
                        headers={"Authorization": f"Bearer {stack.endpoint['token']}"})


def byo_cluster(stack: Stack) -> str:
    """Workspace, experiment and a bring-your-own cluster whose scale settings would ask for 3 nodes."""
    stack.workspace(WS)
    stack.client.experiments.begin_create(stack.rg, WS, EXP).result()
    path = stack.cluster_id(WS, CLUSTER)
    body = {"properties": {"vmSize": "STANDARD_D1_V2", "nodeSource": "bringYourOwn",
                           "userAccountSettings": {"adminUserName": "demo"},
                           "scaleSettings": {"manual": {"targetNodeCount": 3}}}}
    with arm(stack) as http:
        r = http.put(f"{path}?{API}", json=body)
        assert r.status_code in (200, 201), r.text
    return path


def join_token(stack: Stack, cluster: str) -> dict[str, Any]:
    with arm(stack) as http:
        r = http.post(f"{cluster}/joinTokens?{API}", json={"expiresInHours": 2})
        assert r.status_code == 200, r.text
        return dict(r.json())


def revoke(stack: Stack, cluster: str, name: str) -> None:
    with arm(stack) as http:
        assert http.delete(f"{cluster}/joinTokens/{name}?{API}").status_code == 200


def node_counts(stack: Stack) -> tuple[int, int]:
    """(currentNodeCount, idle nodes) as the cluster's GET reports them."""
    c = stack.client.clusters.get(stack.rg, WS, CLUSTER)
    return c.current_node_count or 0, c.node_state_counts.idle_node_count or 0


def run_job(stack: Stack, job: str) -> str:
    """Submit a job that prints where its node keeps it; wait for it; its stdout."""
    stack.submit(WS, EXP, job, CLUSTER, 'echo "ran in $AZ_BATCHAI_JOB_TEMP"')
    assert stack.wait_job(WS, EXP, job, timeout=600).execution_state == "succeeded"
    url = stack.output_files(WS, EXP, job)["stdout.txt"].download_url
    return stack.download(url)


def refused_credential(stack: Stack, node: dict[str, str]) -> httpx.Response:
    """The node's next request, made with its own node token."""
    with httpx.Client(base_url=stack.endpoint["url"], timeout=30,
                      verify=ssl.create_default_context(cafile=stack.endpoint["ca_file"])) as http:
        return http.post("/nodeagent/credentials", json={"clusterKey": node["clusterKey"], "nodeId": node["nodeId"]},
                         headers={"Authorization": f"Bearer {node['token']}"})


# --- processes ---------------------------------------------------------------------------------


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`batchai` against the stack (its endpoint file)."""
    return subprocess.run([sys.executable, "-m", "shared.cli.main", "--state-dir", str(stack.state_dir), *args],
                          capture_output=True, text=True, timeout=300)


def cli_join(stack: Stack, token: str, name: str, install: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli.main", "node", "join", "--endpoint", stack.endpoint["url"],
                           "--token", token, "--name", name, "--install-dir", str(install),
                           "--ca-file", stack.endpoint["ca_file"], "--service", "process", "--timeout", "600"],
                          capture_output=True, text=True, timeout=900)


def joined_node(install: Path) -> dict[str, str]:
    config = json.loads((install / "agent.json").read_text())
    return {"clusterKey": config["clusterKey"], "nodeId": config["nodeId"],
            "token": (install / "node-token").read_text().strip()}


def agent_alive(install: Path) -> bool:
    return previous_agent(install) is not None


def agent_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BATCHAI_")}


@pytest.fixture()
def installs(tmp_path: Path) -> Iterator[list[Path]]:
    """Install directories of the machines a test joins; their detached agents are killed afterwards."""
    made: list[Path] = []
    yield made
    for install in made:
        agent = previous_agent(install)  # only the agent this test started (its pid file and command line)
        if agent is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.pid, signal.SIGKILL)  # it leads its own session: its jobs go with it


def test_a_process_node_joins_runs_a_job_and_is_lost_once_revoked(local_stack: dict[str, Any], tmp_path: Path,
                                                                  installs: list[Path]) -> None:
    stack = Stack(local_stack)
    cluster = byo_cluster(stack)
    first, second = tmp_path / "box1", tmp_path / "box2"
    installs.extend([first, second])
    made = cli(stack, "node", "token", "create", "-w", WS, "-c", CLUSTER, "--expires-in-hours", "2")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)

    joined = cli_join(stack, token["token"], "box1", first)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    box1 = joined_node(first)
    assert f"node {box1['nodeId']} joined" in joined.stderr and os.stat(first / "node-token").st_mode & 0o077 == 0
    stack.idle_nodes(WS, CLUSTER, 1, timeout=600)
    assert node_counts(stack) == (1, 1)  # its scale settings asked for 3: none was started

    assert f"ran in {first}" in run_job(stack, "before")

    listed = cli(stack, "node", "token", "list", "-w", WS, "-c", CLUSTER, "-o", "json")
    assert [t["name"] for t in json.loads(listed.stdout)] == [token["name"]] and token["token"] not in listed.stdout
    revoked = cli(stack, "node", "token", "revoke", "-w", WS, "-c", CLUSTER, token["name"])
    assert revoked.returncode == 0, revoked.stderr
    refused = refused_credential(stack, box1)
    # (revoked, or already removed by the reconciler that saw the token revoked)
    assert refused.status_code == 401 and any(why in refused.json()["error"]["message"]
                                              for why in ("was revoked", "was removed from the cluster"))
    wait_until(lambda: node_counts(stack) == (0, 0), 300, what="the revoked node to be gone from the cluster")
    wait_until(lambda: not agent_alive(first), 300, what="box1's agent to end (its queue is gone)")
    restarted = subprocess.run([sys.executable, "-m", "shared.agent", "--joined", str(first / "agent.json")],
                               capture_output=True, text=True, timeout=300, env=agent_env())
    assert restarted.returncode == REFUSED_EXIT, restarted.stderr[-2000:]  # refused at once: no restart helps

    # The next job waits for a node: it runs once another machine joined, and there, not on box1.
    stack.submit(WS, EXP, "after", CLUSTER, 'echo "ran in $AZ_BATCHAI_JOB_TEMP"')
    assert stack.client.jobs.get(stack.rg, WS, EXP, "after").execution_state == "queued"
    again = cli_join(stack, join_token(stack, cluster)["token"], "box2", second)
    assert again.returncode == 0, again.stdout + again.stderr
    assert stack.wait_job(WS, EXP, "after", timeout=600).execution_state == "succeeded"
    out = stack.download(stack.output_files(WS, EXP, "after")["stdout.txt"].download_url)
    assert f"ran in {second}" in out and str(first) not in out


# --- machines ----------------------------------------------------------------------------------

MACHINE_NAME = "byobox"
CLI_VENV = "/opt/batchai-cli"
NODE_DIR = "/opt/batchai-node"


def podman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def in_machine(name: str, script: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return podman("exec", name, "sh", "-c", script, timeout=timeout)


def cli_wheels(target: Path) -> Path:
    """The project's wheel with what its command line needs (the service extra), for the machine's Python,
    in a directory of its own (hard links into the stack's wheel cache)."""
    import tomllib

    from shared.localstack import wheelhouse

    extra = tomllib.loads((wheelhouse.ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    house = wheelhouse.build_wheelhouse(tuple(extra["service"]))
    target.mkdir()
    for wheel in house.glob("*.whl"):
        os.link(wheel, target / wheel.name)
    return target


@pytest.fixture()
def own_machine(cloud_stack: dict[str, Any]) -> Iterator[str]:
    """A machine of the stack's image on the stack's network that no scale set holds (the stack's own
    reserved address .9), booted with empty user data; removed afterwards."""
    import ipaddress
    import uuid

    from shared.emulator.image import ensure_image
    from shared.emulator.machines import Machines, MachineSpec
    from shared.emulator.network import ensure_network
    from shared.localstack import cloud_topology

    state = Path(cloud_stack["state_dir"])
    stack_id = cloud_topology.stack_id_of(state)
    network = ensure_network(stack_id)
    machines = Machines(network, ensure_image(), stack_id, state)
    spec = MachineSpec(name=f"bai-{stack_id}-{MACHINE_NAME}", hostname=MACHINE_NAME,
                       ip=str(list(ipaddress.IPv4Network(network.subnet).hosts())[8]),
                       user_data=b"#cloud-config\n{}\n", instance_id=str(uuid.uuid4()), labels={})
    machines.boot(spec)
    try:
        def booted() -> str:
            status = machines.exec(spec.name, ["cloud-init", "status"]).stdout
            return status if "status: done" in status or "status: error" in status else ""
        wait_until(booted, 600, interval=1.0, what="the machine to boot")
        yield spec.name
    finally:
        machines.remove(spec.name)


def test_a_machine_joins_with_batchai_node_join_runs_a_job_and_gets_none_once_revoked(
        cloud_stack: dict[str, Any], own_machine: str, tmp_path: Path, installs: list[Path]) -> None:
    stack = Stack(cloud_stack)
    cluster = byo_cluster(stack)
    token = join_token(stack, cluster)
    # The command line reaches the machine as any package does (here: copied in, no index)
    wheels = cli_wheels(tmp_path / "cli-wheels")
    assert podman("cp", str(wheels), f"{own_machine}:/tmp/cli-wheels").returncode == 0
    assert podman("cp", stack.endpoint["ca_file"], f"{own_machine}:/tmp/stack-ca.pem").returncode == 0
    installed = in_machine(own_machine, f"python3 -m venv {CLI_VENV} && {CLI_VENV}/bin/pip install --quiet "
                                        f"--no-index --find-links /tmp/cli-wheels 'batchai[service]'")
    assert installed.returncode == 0, installed.stderr

    joined = in_machine(own_machine, f"{CLI_VENV}/bin/batchai node join --endpoint {stack.endpoint['url']} "
                                     f"--token {token['token']} --ca-file /tmp/stack-ca.pem --timeout 900")
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert "systemd unit batchai-node.service" in joined.stderr
    assert in_machine(own_machine, "systemctl is-active batchai-node.service").stdout.strip() == "active"
    stack.idle_nodes(WS, CLUSTER, 1, timeout=900)
    assert node_counts(stack) == (1, 1)

    assert f"ran in {NODE_DIR}/" in run_job(stack, "on-machine")

    config = json.loads(in_machine(own_machine, f"cat {NODE_DIR}/agent.json").stdout)
    node = {"clusterKey": config["clusterKey"], "nodeId": config["nodeId"],
            "token": in_machine(own_machine, f"cat {NODE_DIR}/node-token").stdout.strip()}
    revoke(stack, cluster, token["name"])
    refused = refused_credential(stack, node)
    assert refused.status_code == 401, refused.text
    wait_until(lambda: node_counts(stack) == (0, 0), 300, what="the revoked machine to be gone from the cluster")

    def agent_refused() -> bool:  # its agent ends, refused, and systemd leaves it stopped
        shown = in_machine(own_machine, "systemctl show -p ActiveState -p ExecMainStatus batchai-node.service").stdout
        return f"ExecMainStatus={REFUSED_EXIT}" in shown and "ActiveState=failed" in shown
    wait_until(agent_refused, 300, interval=2.0, what="the machine's agent to stop, refused")

    # The next job waits; it runs on the next node that joins (a process node here), not on the machine.
    stack.submit(WS, EXP, "after-machine", CLUSTER, 'echo "ran in $AZ_BATCHAI_JOB_TEMP"')
    assert stack.client.jobs.get(stack.rg, WS, EXP, "after-machine").execution_state == "queued"
    other = tmp_path / "other"
    installs.append(other)
    again = cli_join(stack, join_token(stack, cluster)["token"], "other", other)
    assert again.returncode == 0, again.stdout + again.stderr
    assert stack.wait_job(WS, EXP, "after-machine", timeout=600).execution_state == "succeeded"
    out = stack.download(stack.output_files(WS, EXP, "after-machine")["stdout.txt"].download_url)
    assert f"ran in {other}" in out and NODE_DIR not in out
