"""A local node's processes die with it: whatever its agent started (tasks in their own sessions,
daemons that double-fork) is killed the moment the agent dies, with no observation by the provider;
a power-off (the stack stopping) kills the node without letting its agent report; and when the node's
own process is killed, what it left is ended as soon as the provider sees the node dead."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shared.adapters.compute.local import LocalProvider, stop_all
from shared.adapters.compute.port import ClusterSpec
from tests.polling import wait_until

# A stand-in agent: starts a task in a session of its own and a daemon that double-forks (both as a
# node's tasks would be, outside the agent's process group), writes their pids, notes a graceful stop.
AGENT = r"""
import os, pathlib, signal, subprocess, sys, time
workdir = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: ((workdir / "agent-stopped").write_text("1"), sys.exit(0)))
env = {**os.environ, "AZ_BATCHAI_MOUNT_ROOT": str(workdir / "mounts")}  # as the agent gives its tasks
task = subprocess.Popen(["sleep", "300"], start_new_session=True, env=env)
subprocess.run(["bash", "-c", "setsid sleep 301 </dev/null >/dev/null 2>&1 & echo $! > daemon.pid"], check=True,
               env=env)
(workdir / "pids.tmp").write_text('{"task": %d, "daemon": %s}' % (task.pid, (workdir / "daemon.pid").read_text()))
os.replace(workdir / "pids.tmp", workdir / "pids.json")  # whole: the test reads it as soon as it exists
while True:
    signal.pause()  # idle until stopped, as an agent with nothing to do
"""


def stand_in(cluster_key: str, node_id: str, workdir: Path) -> list[str]:
    return [sys.executable, "-c", AGENT, str(workdir)]


def spec(key: str) -> ClusterSpec:
    return ClusterSpec(cluster_key=key, arm_id="/x", vm_size="STANDARD_D1_V2", vm_priority="dedicated")


@pytest.fixture()
def provider(storage_conn: str, tmp_path: Path) -> Iterator[LocalProvider]:
    p = LocalProvider(tmp_path / "state", storage_conn, command=stand_in, leave_wait_s=0.5, grace_s=2.0)
    yield p
    stop_all(p.state_dir, grace_s=5.0)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def started_node(provider: LocalProvider, key: str) -> tuple[str, dict[str, int], dict[str, int]]:
    """A running node of `key`: its id, its record, and the pids of the task and daemon its agent started."""
    provider.reconcile(spec(key), 1)
    (node_id,) = [i.node_id for i in provider.list_instances(key)]
    workdir = provider.state_dir / "nodes" / node_id
    pids = wait_until(lambda: (workdir / "pids.json").exists() and json.loads((workdir / "pids.json").read_text()),
                      30, what="the stand-in agent's task and daemon")
    record = json.loads((workdir / "instance.json").read_text())
    for pid in pids.values():
        assert not gone(pid)
        # Outside the agent's session, so its group is no help (the daemon's pid is written as it forks,
        # before it calls setsid).
        wait_until(lambda pid=pid: os.getsid(pid) != os.getsid(record["pid"]), 30,
                   what=f"{pid} to leave the agent's session")
    return node_id, record, pids


def test_killing_the_agent_kills_its_tasks_and_daemons_at_once(provider: LocalProvider) -> None:
    _, record, pids = started_node(provider, "s|rg|ws|orphans1")
    os.kill(record["pid"], signal.SIGKILL)
    # No provider call from here on: the node itself ends its processes.
    wait_until(lambda: all(gone(pid) for pid in pids.values()), 30, what="the task and daemon to die with the agent")
    wait_until(lambda: gone(record["node"]), 30, what="the node's own process to exit")


def test_power_off_kills_the_node_without_a_graceful_agent_stop(provider: LocalProvider) -> None:
    node_id, record, pids = started_node(provider, "s|rg|ws|orphans2")
    assert stop_all(provider.state_dir, grace_s=5.0) == 1
    for pid in (record["pid"], record["node"], *pids.values()):
        assert gone(pid), pid
    workdir = provider.state_dir / "nodes" / node_id
    assert not (workdir / "agent-stopped").exists()  # killed, not stopped: it reported nothing
    assert provider.list_instances("s|rg|ws|orphans2") == []  # the instance is gone


def test_a_killed_node_process_takes_its_agent_and_the_provider_ends_the_rest(provider: LocalProvider) -> None:
    key = "s|rg|ws|orphans3"
    _, record, pids = started_node(provider, key)
    os.kill(record["node"], signal.SIGKILL)
    wait_until(lambda: gone(record["pid"]), 30, what="the agent to die with its node")
    wait_until(lambda: [i.state for i in provider.list_instances(key)] == ["failed"], 30, what="the node seen failed")
    # Seeing it failed killed what it left (SIGKILL is delivered at once; the exit follows).
    wait_until(lambda: all(gone(pid) for pid in pids.values()), 10, what="the task and daemon the node left to die")
