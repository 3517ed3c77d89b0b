"""The clusters' size over time: one sample per cluster per minute, written by the reconciler's tick (node
counts by state, queued jobs, the autoscaler's target), read back in time order within a window, and never
more rows than the ring's minutes."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters import sched_store, storage
from shared.adapters.compute.local import LocalProvider, stop_all
from shared.config import Settings
from shared.dashboard import cluster_history
from shared.dashboard.cluster_history import RETENTION_MINUTES, read, record, sample
from shared.domain.keys import WorkspaceRef
from shared.services.cluster_reconcile import reconcile_cluster
from tests.nodes.helpers import put_cluster, stand_in

T0 = datetime(2026, 3, 1, 9, 0, 30, tzinfo=UTC)


@pytest.fixture()
def settings(storage_conn: str, tmp_path: Path):
    s = dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn,
                            state_dir=tmp_path / "state", provider="local")
    yield s
    stop_all(s.state_dir, grace_s=2.0)


def rows(*node_states: str) -> list[dict]:
    return [{"RowKey": f"node|n{i}", "state": s} for i, s in enumerate(node_states)]


def test_a_sample_counts_nodes_by_state_and_the_queue() -> None:
    s = sample(T0, rows("idle", "running", "running", "starting", "lost", "leaving", "bogus"), [2, 1], wanted=5)
    assert (s.at, s.nodes, s.idle, s.running, s.preparing, s.unusable, s.leaving) == (
        T0.replace(second=0), 5, 1, 2, 1, 1, 1)
    assert (s.queued_jobs, s.queued_nodes, s.wanted) == (2, 3, 5)


def test_one_row_per_minute_read_in_time_order_within_the_window(settings: Settings) -> None:
    key = f"s|rg|ws|{uuid.uuid4().hex[:8]}"
    record(settings, key, T0, rows("idle"), [], 1)
    record(settings, key, T0 + timedelta(seconds=20), rows("idle", "running"), [1], 2)  # same minute: replaces
    record(settings, key, T0 + timedelta(minutes=1), rows("running", "running"), [], 2)
    record(settings, key, T0 - timedelta(hours=2), rows(), [1], 0)  # outside the hour asked for
    samples = read(settings, key, T0 + timedelta(minutes=1))
    assert [(s.at, s.nodes, s.queued_jobs) for s in samples] == [
        (T0.replace(second=0), 2, 1), (T0.replace(second=0) + timedelta(minutes=1), 2, 0)]
    assert len(read(settings, key, T0 + timedelta(minutes=1), timedelta(hours=3))) == 3


def test_the_ring_overwrites_the_oldest_minute(settings: Settings) -> None:
    key = f"s|rg|ws|{uuid.uuid4().hex[:8]}"
    record(settings, key, T0, rows("idle"), [], 1)
    record(settings, key, T0 + timedelta(minutes=RETENTION_MINUTES), rows("idle", "idle"), [], 2)
    client = storage.table(settings.storage_connection_string, cluster_history.T_CLUSTER_HISTORY)
    stored = list(client.query_entities("PartitionKey eq @pk", parameters={"pk": key}))
    assert len(stored) == 1 and stored[0]["nodes"] == 2


def test_the_reconcilers_tick_records_a_sample(settings: Settings) -> None:
    ref = WorkspaceRef("sub-history", "rg", f"ws{uuid.uuid4().hex[:6]}").cluster("c")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 0}})
    job_key = ref.workspace.experiment("e").job("j").key
    sched_store.add_pending(settings.storage_connection_string, ref.key, job_key, "normal", T0, 2)
    provider = LocalProvider(settings.state_dir, settings.storage_connection_string, command=stand_in)
    try:
        reconcile_cluster(settings, ref, T0, provider)
        [s] = read(settings, ref.key, T0)
        assert (s.nodes, s.queued_jobs, s.queued_nodes, s.wanted) == (0, 1, 2, 0)
    finally:  # a pending row of a job that never existed is not left for other tests' safety passes
        storage.table(settings.storage_connection_string, storage.T_SCHED).delete_entity(
            ref.key, sched_store.pending_row("normal", T0, job_key))
