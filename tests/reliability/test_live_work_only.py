"""A tick's cost follows the work in flight, not the history: with 10,000 ended jobs stored, the
safety pass, the reaper and the cluster reconcile (the autoscaler) are given no ended job by storage.
What they read is counted at the wire (`table_tap`: a proxy in front of Azurite's Table endpoint), not
by the service's own calls."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings, azurite_connection_string
from shared.domain.states import JobPhase
from shared.localstack.azurite import start_azurite
from shared.services import cluster_reconcile, reaper, safety_pass, scheduling
from tests.reliability.table_tap import table_tap
from tests.scheduling.conftest import World

HISTORY = 10_000
ENDED = (JobPhase.SUCCEEDED, JobPhase.FAILED)


def _history(conn: str, world: World) -> None:
    """Ended jobs in the live jobs' experiment and in an older one, written around the tap."""
    store = ResourceStore(conn, storage.T_JOBS)
    old = world.ws.experiment("old")

    def put(i: int) -> None:
        exp = world.exp if i % 2 else old
        name = f"done{i:05d}"
        store.insert(exp.job_pk, name, {
            "id": exp.job(name).arm_id, "name": name, "type": "Microsoft.BatchAI/workspaces/experiments/jobs",
            "properties": {"cluster": {"id": world.cluster.arm_id}, "nodeCount": 1},
            "internal": {"phase": ENDED[i % 2], "history": [], "attempt": 1, "clusterKey": world.key}})
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(HISTORY)))


def _cluster_without_machines(world: World) -> None:
    """Target 0: the reconcile starts no node process (the node row is the test's own)."""
    ResourceStore(world.conn, storage.T_CLUSTERS).insert(world.ws.child_pk, "gpu", {
        "id": world.cluster.arm_id, "name": "gpu", "type": "Microsoft.BatchAI/workspaces/clusters",
        "properties": {"vmSize": "STANDARD_D1", "scaleSettings": {"manual": {"targetNodeCount": 0}}},
        "internal": {}})


def test_ticks_are_given_no_ended_job(tmp_path: Path) -> None:
    server = start_azurite(tmp_path / "azurite", log=tmp_path / "azurite.log")
    try:
        storage.ensure_all(server.connection_string)
        with table_tap(server.table_port) as (tap, port):
            conn = azurite_connection_string(blob=server.blob_port, queue=server.queue_port, table=port)
            settings = dataclasses.replace(Settings.from_env(), storage_connection_string=conn,
                                           state_dir=tmp_path / "state")
            world = World(settings)
            _history(server.connection_string, world)
            _cluster_without_machines(world)
            node = world.node("n1")
            running = world.submit("running")
            world.submit("queued", at=1)
            now = datetime.now(UTC)
            scheduling.run_pass(settings, world.key, now)
            assert world.internal(running)["phase"] == JobPhase.ASSIGNED
            storage.container(conn, storage.C_HEARTBEATS).upload_blob(
                storage.heartbeat_blob(world.key, node), b"", overwrite=True, metadata={"assignments": ""})

            tap.clear()
            safety_pass.safety_pass(settings, now)
            reaper.reap_all(settings, now)
            cluster_reconcile.reconcile_all(settings, now)
            given = tap.of(storage.T_JOBS)
            assert {e["RowKey"] for e in given} >= {"queued", "running"}  # the live jobs were read
            assert [e["RowKey"] for e in given if e.get("phase") in ENDED] == []
            assert not list((tmp_path / "state").glob("nodes/*"))
    finally:
        server.stop()
