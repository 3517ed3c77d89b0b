"""The local compute provider against real processes (a stand-in node process) and real Azurite."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from shared.adapters import storage
from shared.adapters.compute.local import LocalProvider, stop_all
from shared.adapters.compute.port import ClusterSpec
from shared.domain.messages import parse_node_message
from tests.nodes.helpers import stand_in, wait_until


def spec(key: str) -> ClusterSpec:
    return ClusterSpec(cluster_key=key, arm_id="/x", vm_size="STANDARD_D1_V2", vm_priority="lowpriority")


@pytest.fixture()
def provider(storage_conn: str, tmp_path: Path):
    p = LocalProvider(tmp_path / "state", storage_conn, command=stand_in, leave_wait_s=0.5, grace_s=2.0)
    yield p
    stop_all(p.state_dir, grace_s=2.0)


def live(p: LocalProvider, key: str) -> list[str]:
    return sorted(i.node_id for i in p.list_instances(key) if i.state == "running")


def test_reconcile_starts_to_target_and_is_idempotent(provider: LocalProvider):
    key = "s|rg|ws|prov1"
    provider.reconcile(spec(key), 2)
    provider.reconcile(spec(key), 2)
    ids = live(provider, key)
    assert len(ids) == 2
    for node_id in ids:
        assert re.fullmatch(r"[0-9a-f]{6}-\d+", node_id) and len(node_id) <= 40
        record = json.loads((provider.state_dir / "nodes" / node_id / "instance.json").read_text())
        assert record["cluster"] == key
        # The agent runs under its node's own process, a child of this one in a session of its own:
        # the caller's signals and death do not reach the node.
        node = psutil.Process(record["node"])
        assert node.ppid() == os.getpid() and os.getsid(node.pid) == node.pid != os.getsid(0)
        assert psutil.Process(record["pid"]).ppid() == node.pid
        wait_until(lambda n=node_id: (provider.state_dir / "nodes" / n / "started").exists())
    assert provider.clusters() == {key}
    assert live(provider, "s|rg|ws|other") == []


def test_remove_exactly_the_named_instances(provider: LocalProvider, storage_conn: str):
    key = "s|rg|ws|prov2"
    provider.reconcile(spec(key), 3)
    first, second, third = live(provider, key)
    pid = json.loads((provider.state_dir / "nodes" / second / "instance.json").read_text())["pid"]
    provider.reconcile(spec(key), 2, remove=[second, "unknown-7"])
    # A Leave went to its queue first (the stand-in ignores it, then gets SIGTERM).
    assert {i.node_id: i.state for i in provider.list_instances(key)}.get(second) in ("deleting", None)
    wait_until(lambda: second not in {i.node_id for i in provider.list_instances(key)})
    assert live(provider, key) == [first, third]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # Removing it again is silent, and the target does not start a replacement beyond 2.
    provider.reconcile(spec(key), 2, remove=[second])
    assert live(provider, key) == [first, third]
    # Ids are never reused.
    provider.reconcile(spec(key), 3)
    newest = set(live(provider, key)) - {first, third}
    assert newest and second not in newest


def test_leave_message_reaches_the_node_queue(provider: LocalProvider, storage_conn: str):
    key = "s|rg|ws|prov3"
    provider.reconcile(spec(key), 1)
    (node_id,) = live(provider, key)
    q = storage.queue(storage_conn, storage.node_queue_name(node_id))
    provider.reconcile(spec(key), 0, remove=[node_id])
    messages = [parse_node_message(m.content) for m in q.peek_messages(max_messages=5)]
    assert [m.kind for m in messages] == ["leave"]
    wait_until(lambda: not provider.list_instances(key))


def test_dead_process_is_observed_as_failed(provider: LocalProvider):
    key = "s|rg|ws|prov4"
    provider.reconcile(spec(key), 1)
    (node_id,) = live(provider, key)
    pid = json.loads((provider.state_dir / "nodes" / node_id / "instance.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: [i.state for i in provider.list_instances(key)] == ["failed"])
    assert "-9" in provider.list_instances(key)[0].detail
    # A failed instance is not live: reconcile starts a replacement and removing the dead one is clean.
    provider.reconcile(spec(key), 1, remove=[node_id])
    instances = provider.list_instances(key)
    assert [i.state for i in instances] == ["running"] and instances[0].node_id != node_id


def test_preempt_sends_the_notice(provider: LocalProvider):
    key = "s|rg|ws|prov5"
    provider.reconcile(spec(key), 1)
    (node_id,) = live(provider, key)
    workdir = provider.state_dir / "nodes" / node_id
    wait_until(lambda: (workdir / "started").exists())
    assert provider.preempt(node_id)
    wait_until(lambda: (workdir / "preempt-notice").exists())
    assert not provider.preempt("nope-1")


def test_delete_cluster_and_stop_all(provider: LocalProvider):
    provider.reconcile(spec("s|rg|ws|prov6"), 2)
    provider.reconcile(spec("s|rg|ws|prov7"), 1)
    provider.delete_cluster("s|rg|ws|prov6")
    wait_until(lambda: not provider.list_instances("s|rg|ws|prov6"))
    assert len(live(provider, "s|rg|ws|prov7")) == 1
    assert stop_all(provider.state_dir, grace_s=2.0) == 1
    assert provider.list_instances("s|rg|ws|prov7") == []


def test_a_dead_node_is_seen_failed_and_what_it_left_outside_its_process_tree_is_ended(provider: LocalProvider):
    key = "s|rg|ws|prov6"
    provider.reconcile(spec(key), 1)
    (node_id,) = live(provider, key)
    workdir = provider.state_dir / "nodes" / node_id
    loop = ["sleep", "120"]
    # Processes of the node that are not below its own process (it dies with its agent and ends
    # everything below it): found by the node's directories in their environment.
    task = subprocess.Popen(loop, start_new_session=True, env={
        **os.environ, "AZ_BATCHAI_JOB_MOUNT_ROOT": str(workdir / "jobs" / "a1" / "mounts")})
    other = subprocess.Popen(loop, start_new_session=True, env={  # another node's task: same prefix, not it
        **os.environ, "AZ_BATCHAI_MOUNT_ROOT": f"{workdir}0/mounts"})
    try:
        pid = json.loads((workdir / "instance.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)  # the agent dies
        wait_until(lambda: [i.state for i in provider.list_instances(key)] == ["failed"])
        assert task.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
        provider.reconcile(spec(key), 0, remove=[node_id])
        assert provider.list_instances(key) == []
    finally:
        for proc in (task, other):
            proc.kill()
            proc.wait()
