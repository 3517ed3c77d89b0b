"""Remote login and `batchai cluster node exec` / `job node exec` on both topologies: the login address each
node reports (a machine: its private IP and sshd's port; a process node: none), a command's output, errors
and exit code from the node (over ssh as the cluster's admin user on machines, through the node's agent on
process nodes, where a job's command runs in that job's environment), and a caller without the
remoteLoginInformation action refused."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import MACHINES, PROCESSES, Stack
from tests.polling import wait_until

WS, EXP, CLUSTER = "exec", "runs", "one"
BATCHAI = str(Path(sys.executable).with_name("batchai"))


def batchai(stack: Stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it (its own process: ssh's output is the CLI's own)."""
    return subprocess.run([BATCHAI, "--state-dir", str(stack.state_dir), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def one_node(stack: Stack) -> tuple[Stack, str]:
    """Workspace `exec` with experiment `runs` and a 1-node cluster `one`; (the stack, the node id)."""
    stack.workspace(WS)
    stack.client.experiments.begin_create(stack.rg, WS, EXP).result()
    stack.manual_cluster(WS, CLUSTER, 1)
    stack.idle_nodes(WS, CLUSTER, 1, timeout=900)  # machines boot slowly on a busy host
    [login] = stack.client.clusters.list_remote_login_information(stack.rg, WS, CLUSTER)
    return stack, login.node_id


def machine_ip(stack: Stack, node_id: str) -> str:
    inspected = subprocess.run(["podman", "inspect", stack.machine(WS, CLUSTER, node_id)], capture_output=True,
                               text=True, check=True)
    networks = json.loads(inspected.stdout)[0]["NetworkSettings"]["Networks"]
    [address] = [n["IPAddress"] for n in networks.values()]
    return str(address)


def test_remote_login_information_is_the_nodes_sshd(one_node: tuple[Stack, str]) -> None:
    stack, node = one_node
    [login] = stack.client.clusters.list_remote_login_information(stack.rg, WS, CLUSTER)
    if stack.topology == MACHINES:
        assert (login.node_id, login.ip_address, login.port) == (node, machine_ip(stack, node), 22)
    else:
        assert (login.node_id, login.ip_address, login.port) == (node, None, None)


def test_cluster_node_exec_runs_the_command_on_the_node(one_node: tuple[Stack, str]) -> None:
    stack, node = one_node
    done = batchai(stack, "cluster", "node", "exec", "-w", WS, "-c", CLUSTER, "-n", node, "--exec",
                   "echo on $(hostname) as $(id -un) in $(pwd); echo trouble >&2; exit 7")
    assert done.returncode == 7, done
    assert done.stderr == "trouble\n"
    if stack.topology == MACHINES:  # over ssh, as the cluster's admin user
        assert done.stdout == f"on {node} as demo in /home/demo\n"
    else:  # the node's agent ran it, in the node's working directory
        workdir = Path(stack.state_dir) / "nodes" / node
        assert done.stdout.startswith("on ") and done.stdout.endswith(f" in {workdir.resolve()}\n"), done.stdout


def test_job_node_exec_runs_in_the_jobs_environment(one_node: tuple[Stack, str]) -> None:
    stack, node = one_node
    here, there = stack.scratch("exec-job")
    job = f"held-{uuid.uuid4().hex[:6]}"
    # The job marks its working directory and stays until the test lets it go (bounded: about 5 minutes).
    stack.submit(WS, EXP, job, CLUSTER, f"echo mark-${{AZ_BATCHAI_JOB_ID##*/}} > mark.txt; for i in $(seq 1500); "
                                        f"do [ -e {there}/go ] && exit 0; sleep 0.2; done; exit 9")
    try:
        nodes = wait_until(lambda: [n.node_id for n in stack.client.jobs.list_remote_login_information(
            stack.rg, WS, EXP, job)] if stack.client.jobs.get(stack.rg, WS, EXP, job).execution_state == "running"
            else None, 180, "the job to run")
        assert nodes == [node]
        if stack.topology == PROCESSES:
            wait_until(lambda: batchai(stack, "job", "node", "exec", "-w", WS, "-e", EXP, "-j", job, "--exec",
                                       "cat mark.txt").returncode == 0, 60, "the job's working directory")
            done = batchai(stack, "job", "node", "exec", "-w", WS, "-e", EXP, "-j", job, "-n", node, "--exec",
                           'cat mark.txt; echo "${AZ_BATCHAI_JOB_ID##*/}"; exit 3')
            assert (done.returncode, done.stdout) == (3, f"mark-{job}\n{job}\n"), done
        else:
            done = batchai(stack, "job", "node", "exec", "-w", WS, "-e", EXP, "-j", job, "--exec", "hostname")
            state = stack.client.jobs.get(stack.rg, WS, EXP, job)
            assert (done.returncode, done.stdout) == (0, f"{node}\n"), (
                done.stderr, state.execution_state, [(e.code, e.message) for e in state.execution_info.errors or []])
    finally:
        (here / "go").touch()
    assert stack.wait_job(WS, EXP, job).execution_state == "succeeded"


@pytest.mark.parametrize("stack", [PROCESSES], indirect=True)
def test_exec_needs_the_remote_login_action(one_node: tuple[Stack, str]) -> None:
    stack, node = one_node
    ws_id = stack.cluster_id(WS, CLUSTER).rsplit("/clusters/", 1)[0]
    reader = f"reader-{uuid.uuid4().hex[:6]}"
    assert batchai(stack, "role", "assignment", "create", "--assignee", reader, "--role", "Reader",
                   "--scope", ws_id).returncode == 0
    token = batchai(stack, "stack", "token", "--principal", reader).stdout.strip()
    path = f"{stack.cluster_id(WS, CLUSTER)}/nodes/{node}/exec?api-version=2018-05-01"
    owner = stack.endpoint["token"]
    verify = ssl.create_default_context(cafile=stack.endpoint["ca_file"])
    with httpx.Client(base_url=stack.endpoint["url"], verify=verify, timeout=30) as http:
        assert http.get(stack.cluster_id(WS, CLUSTER) + "?api-version=2018-05-01",
                        headers={"Authorization": f"Bearer {token}"}).status_code == 200  # a reader of the cluster
        refused = http.post(path, json={"command": "id"}, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"
        assert "remoteLoginInformation/action" in refused.json()["error"]["message"]
        started = http.post(path, json={"command": "echo hi"}, headers={"Authorization": f"Bearer {owner}"})
        assert started.status_code == 202, started.text
        location = started.headers["Location"]

        def answered() -> dict[str, object] | None:
            got: dict[str, object] = http.get(location, headers={"Authorization": f"Bearer {owner}"}).json()
            return got if got["status"] != "InProgress" else None
        result = wait_until(answered, 300, "the node's answer")
        assert [result[k] for k in ("status", "exitCode", "stdout", "stderr")] == ["Succeeded", 0, "hi\n", ""]
        # A result is its caller's own: another principal, even one allowed to run commands, does not see it.
        other = f"owner-{uuid.uuid4().hex[:6]}"
        assert batchai(stack, "role", "assignment", "create", "--assignee", other, "--role", "Owner",
                       "--scope", ws_id).returncode == 0
        other_token = batchai(stack, "stack", "token", "--principal", other).stdout.strip()
        assert http.get(location, headers={"Authorization": f"Bearer {other_token}"}).status_code == 404
