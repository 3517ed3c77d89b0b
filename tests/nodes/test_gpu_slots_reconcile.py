"""The reconciler counts GPU slots on a gpu-slots cluster (real Azurite, stand-in node processes): pending
1-GPU jobs ask for as many nodes as the VM size's GPUs hold them in, not one node each."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters import sched_store, storage
from shared.adapters.compute.local import LocalProvider, stop_all
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.services.cluster_reconcile import reconcile_cluster
from tests.nodes.helpers import cluster_ref, put_cluster, stand_in

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture()
def settings(storage_conn: str, tmp_path: Path):
    s = dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn,
                            state_dir=tmp_path / "state", provider="local", idle_timeout_s=300.0)
    yield s
    stop_all(s.state_dir, grace_s=2.0)


@pytest.mark.parametrize(("packing", "started"), [("gpu-slots", 2), ("whole-node", 3)])
def test_autoscale_counts_slots(settings: Settings, packing: str, started: int) -> None:
    conn = settings.storage_connection_string
    provider = LocalProvider(settings.state_dir, conn, command=stand_in, leave_wait_s=0.3, grace_s=2.0)
    ref = cluster_ref(f"slots-{packing}")
    put_cluster(conn, ref, {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 4, "initialNodeCount": 0}},
                vmSize="STANDARD_NC12", packing=packing)
    ResourceStore(conn, storage.T_CLUSTERS).update(ref.workspace.child_pk, ref.name.lower(),
                                                   lambda d: d["internal"].update(packing=packing))
    for i in range(3):
        sched_store.add_pending(conn, ref.key, f"sub-nodes|rg|ws|exp|j{i}", "normal", T0, 1, slots=1)
    result = reconcile_cluster(settings, ref, T0, provider)
    assert result.provider_target == started and len(result.adopted) == started
