"""Nodes the provider reports failed are gone at once (no new work, their job requeued at the next
reconcile tick, not after the heartbeat timeout), and the local provider starts a bounded number of
agents per tick however large the target. Real node processes (stand-ins) and real Azurite."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.compute.local import LocalProvider, stop_all
from shared.config import Settings
from shared.decisions.autoscaler import InstanceView, ScaleInput, ScalePolicy, decide
from shared.services import nodes
from shared.services.cluster_reconcile import MAX_STARTS_PER_TICK, reconcile_cluster
from shared.services.scheduling import run_pass
from tests.nodes.helpers import cluster_ref, put_cluster, stand_in, wait_until
from tests.nodes.test_deallocation import T0, cluster_with_busy_node, internal_of, submit


@pytest.fixture()
def local(storage_conn: str, tmp_path: Path) -> Iterator[tuple[Settings, LocalProvider]]:
    """Settings of the local provider in a state directory of its own, and that provider (stand-in agents)."""
    settings = dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn,
                                   state_dir=tmp_path / "state", provider="local", heartbeat_timeout_s=15.0)
    yield settings, LocalProvider(settings.state_dir, storage_conn, command=stand_in, leave_wait_s=0.3, grace_s=2.0)
    stop_all(settings.state_dir, grace_s=2.0)


def kill(settings: Settings, node_id: str) -> None:
    record = json.loads((settings.state_dir / "nodes" / node_id / "instance.json").read_text())
    os.kill(int(record["pid"]), signal.SIGKILL)


def test_a_failed_node_is_lost_at_the_next_tick_and_gets_no_work(local: tuple[Settings, LocalProvider]):
    settings, provider = local
    cluster, job, busy, idle = cluster_with_busy_node(settings, provider, "failed1", "requeue")
    kill(settings, idle)
    kill(settings, busy)
    wait_until(lambda: {i.node_id: i.state for i in provider.list_instances(cluster.key)}
               == {busy: "failed", idle: "failed"}, what="the provider to report both instances failed")

    t1 = T0 + timedelta(seconds=1)  # far within the heartbeat timeout: only the provider's report counts
    result = reconcile_cluster(settings, cluster, t1, provider)
    assert sorted(result.dropped) == sorted([busy, idle])
    assert nodes.get_node(settings, cluster.key, busy) is None and nodes.get_node(settings, cluster.key, idle) is None
    state = internal_of(settings, job)
    assert state["phase"] == "queued" and state["retries"] == 0  # it never started: no retry used
    assert state["executionInfo"]["errors"][-1]["code"] == "NodeLost"

    later = submit(settings, cluster, "failed1-later", t1)
    assert run_pass(settings, cluster.key, t1).assigned == []  # no dead node takes it
    assert internal_of(settings, later)["phase"] == "queued"
    replacements = {i.node_id for i in provider.list_instances(cluster.key) if i.state == "running"}
    assert len(replacements) == 2 and not replacements & {busy, idle}


def test_a_huge_target_starts_a_bounded_number_of_agents_per_tick(local: tuple[Settings, LocalProvider]):
    settings, provider = local
    cap = MAX_STARTS_PER_TICK["local"]
    cluster = cluster_ref("huge")
    put_cluster(settings.storage_connection_string, cluster, {"manual": {"targetNodeCount": 3 * cap + 5}})
    reconcile_cluster(settings, cluster, T0, provider)
    assert len(provider.list_instances(cluster.key)) == cap
    reconcile_cluster(settings, cluster, T0 + timedelta(seconds=2), provider)
    assert len(provider.list_instances(cluster.key)) == 2 * cap


def test_the_decision_caps_starts_for_a_target_of_100000():
    policy = ScalePolicy(manual_target=100_000)
    running = [InstanceView(f"n{i}", "running") for i in range(3)]
    capped = decide(ScaleInput(policy, [], running, [], T0, 60.0, max_starts=8))
    assert (capped.wanted, capped.provider_target) == (100_000, 3 + 8)
    assert decide(ScaleInput(policy, [], running, [], T0, 60.0)).provider_target == 100_000  # no cap given
