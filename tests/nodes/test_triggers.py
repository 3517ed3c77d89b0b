"""The cluster timer triggers: registration (names, schedules) and a direct call of each."""

from __future__ import annotations

from collections.abc import Iterator

import azure.functions as func
import pytest

from functions import clusters
from shared.adapters import sched_store, storage
from shared.adapters.compute.local import LocalProvider, stop_all
from shared.adapters.resource_store import ResourceStore
from shared.localstack.azurite import start_azurite
from tests.nodes.helpers import cluster_ref, put_cluster


def test_blueprint_registers_the_cluster_timers():
    app = func.FunctionApp()
    app.register_functions(clusters.bp)
    found = {f.get_function_name(): f.get_trigger().get_dict_repr() for f in app.get_functions()}
    assert set(found) == {"cluster_reconcile", "node_reaper", "fileserver_reconcile", "aci_jobs_tick"}
    assert found["cluster_reconcile"]["type"] == "timerTrigger"
    assert found["cluster_reconcile"]["schedule"] == "%BATCHAI_RECONCILE_SCHEDULE%"
    assert found["node_reaper"]["schedule"] == "%BATCHAI_REAPER_SCHEDULE%"
    assert found["fileserver_reconcile"]["schedule"] == "%BATCHAI_RECONCILE_SCHEDULE%"
    assert found["aci_jobs_tick"]["schedule"] == "%BATCHAI_ACI_SCHEDULE%"
    assert set(clusters.SCHEDULES) == {"BATCHAI_RECONCILE_SCHEDULE", "BATCHAI_REAPER_SCHEDULE", "BATCHAI_ACI_SCHEDULE"}


@pytest.fixture()
def private_storage(tmp_path) -> Iterator[str]:
    """An Azurite of its own: the timers act on every cluster they find, so they must not see the
    clusters of other tests in the session's storage."""
    server = start_azurite(tmp_path / "azurite", log=tmp_path / "azurite.log")
    try:
        storage.ensure_all(server.connection_string)
        yield server.connection_string
    finally:
        server.stop()


def test_timers_run_against_storage(private_storage: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    state = tmp_path / "state"
    monkeypatch.setenv("BATCHAI_STORAGE_CONNECTION_STRING", private_storage)
    monkeypatch.setenv("BATCHAI_STATE_DIR", str(state))
    monkeypatch.setenv("BATCHAI_PROVIDER", "local")
    ref = cluster_ref("timer1")
    put_cluster(private_storage, ref, {"autoScale": {"minimumNodeCount": 1, "maximumNodeCount": 2}})
    app = func.FunctionApp()
    app.register_functions(clusters.bp)
    try:
        for f in app.get_functions():
            f.get_user_function()(None)
        rows = [r for r in sched_store.partition(private_storage, ref.key) if r["RowKey"].startswith("node|")]
        assert [r["state"] for r in rows] == ["starting"]  # the minimum: one real node agent started
        assert len(LocalProvider(state, private_storage).list_instances(ref.key)) == 1
    finally:
        assert stop_all(state, grace_s=5.0) == 1
    doc = ResourceStore(private_storage, storage.T_CLUSTERS).get(ref.workspace.child_pk, ref.name.lower())
    assert doc.data["internal"]["allocationState"] == "resizing"
    assert doc.data["internal"]["scaleInitialized"] is True
