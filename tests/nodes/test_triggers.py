"""The cluster timer triggers: registration (names, schedules) and a direct call of each."""

from __future__ import annotations

import azure.functions as func
import pytest

from functions import clusters
from shared.adapters import storage
from shared.adapters.compute.local import stop_all
from shared.adapters.resource_store import ResourceStore
from tests.nodes.helpers import cluster_ref, put_cluster


def test_blueprint_registers_both_timers():
    app = func.FunctionApp()
    app.register_functions(clusters.bp)
    found = {f.get_function_name(): f.get_trigger().get_dict_repr() for f in app.get_functions()}
    assert set(found) == {"cluster_reconcile", "node_reaper"}
    assert found["cluster_reconcile"]["type"] == "timerTrigger"
    assert found["cluster_reconcile"]["schedule"] == "%BATCHAI_RECONCILE_SCHEDULE%"
    assert found["node_reaper"]["schedule"] == "%BATCHAI_REAPER_SCHEDULE%"
    assert set(clusters.SCHEDULES) == {"BATCHAI_RECONCILE_SCHEDULE", "BATCHAI_REAPER_SCHEDULE"}


def test_timers_run_against_storage(storage_conn: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    state = tmp_path / "state"
    monkeypatch.setenv("BATCHAI_STATE_DIR", str(state))
    monkeypatch.setenv("BATCHAI_PROVIDER", "local")
    ref = cluster_ref("timer1")
    put_cluster(storage_conn, ref, {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 2}})
    app = func.FunctionApp()
    app.register_functions(clusters.bp)
    try:
        for f in app.get_functions():
            f.get_user_function()(None)
    finally:
        stop_all(state, grace_s=3.0)  # agents of other tests' clusters in this Azurite, if any
    doc = ResourceStore(storage_conn, storage.T_CLUSTERS).get(ref.workspace.child_pk, ref.name.lower())
    assert doc.data["internal"]["allocationState"] == "steady"
    assert doc.data["internal"]["scaleInitialized"] is True
