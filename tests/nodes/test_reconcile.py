"""The cluster reconciler and node events against real Azurite and real (stand-in) node processes."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters import sched_store, storage
from shared.adapters.compute.local import LocalProvider, stop_all
from shared.config import Settings
from shared.domain.messages import NodeEvent, Setup, parse_node_message, setup_version
from shared.services import nodes
from shared.services.cluster_reconcile import cluster_keys, reconcile_cluster
from shared.services.nodes import handle_node_event
from tests.nodes.helpers import cluster_ref, put_cluster, stand_in, wait_until

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture()
def settings(storage_conn: str, tmp_path: Path):
    s = dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn,
                            state_dir=tmp_path / "state", provider="local", idle_timeout_s=300.0)
    yield s
    stop_all(s.state_dir, grace_s=2.0)


@pytest.fixture()
def provider(settings: Settings) -> LocalProvider:
    return LocalProvider(settings.state_dir, settings.storage_connection_string, command=stand_in,
                         leave_wait_s=0.3, grace_s=2.0)


def rows(settings: Settings, key: str) -> dict[str, dict]:
    return {nodes.node_id_of(r): r for r in nodes.node_rows(sched_store.partition(settings.storage_connection_string,
                                                                                  key))}


def internal(settings: Settings, ref) -> dict:
    return nodes.load_cluster(settings, ref.key).data["internal"]


def event(kind: str, key: str, node_id: str, **kw) -> NodeEvent:
    return NodeEvent(kind=kind, cluster_key=key, node_id=node_id, at=T0.isoformat(), **kw)


def bring_up(settings: Settings, key: str, node_id: str, at: datetime) -> None:
    inventory = {"cores": 4, "memoryMb": 8192, "gpus": 0, "address": "127.0.0.1"}
    handle_node_event(settings, event("node-registered", key, node_id, inventory=inventory), at)
    handle_node_event(settings, event("node-ready", key, node_id), at)


def test_manual_cluster_up_then_down(settings: Settings, provider: LocalProvider):
    ref = cluster_ref("manual1")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 2}},
                nodeSetup={"setupTask": {"commandLine": "echo hi"}})
    result = reconcile_cluster(settings, ref, T0, provider)
    assert result.provider_target == 2 and len(result.adopted) == 2
    found = rows(settings, ref.key)
    assert sorted(found) == sorted(result.adopted)
    assert {r["state"] for r in found.values()} == {"starting"}
    assert sorted(i.node_id for i in provider.list_instances(ref.key) if i.state == "running") == sorted(found)
    assert internal(settings, ref)["allocationState"] == "resizing"
    assert ref.key in cluster_keys(settings)

    # A doubled tick starts nothing more.
    again = reconcile_cluster(settings, ref, T0, provider)
    assert again.adopted == [] and len(provider.list_instances(ref.key)) == 2

    first, second = sorted(found)
    handle_node_event(settings, event("node-registered", ref.key, first,
                                      inventory={"cores": 4, "memoryMb": 8192, "gpus": 0, "address": "127.0.0.1"}), T0)
    row = rows(settings, ref.key)[first]
    assert (row["state"], row["cores"], row["memoryMb"]) == ("preparing", 4, 8192)
    setup = [parse_node_message(m.content) for m in storage.queue(
        settings.storage_connection_string, storage.node_queue_name(first)).peek_messages(max_messages=5)]
    assert [m.kind for m in setup] == ["setup"]
    # The message names the cluster and the version of what the node sets up; the node fetches that.
    assert setup[0] == Setup(ref.key, setup_version({"nodeSetup": {"setupTask": {"commandLine": "echo hi"}}}))

    storage.queue(settings.storage_connection_string, storage.Q_KICKS).clear_messages()  # other tests' kicks
    handle_node_event(settings, event("node-ready", ref.key, first), T0)
    handle_node_event(settings, event("node-ready", ref.key, first), T0 + timedelta(seconds=5))  # duplicate
    row = rows(settings, ref.key)[first]
    assert row["state"] == "idle" and row["idleSince"] == T0.isoformat()
    kicks = [json.loads(m.content) for m in storage.queue(settings.storage_connection_string,
                                                          storage.Q_KICKS).peek_messages(max_messages=32)]
    assert {"cluster": ref.key} in kicks
    bring_up(settings, ref.key, second, T0 + timedelta(seconds=10))
    result = reconcile_cluster(settings, ref, T0 + timedelta(seconds=20), provider)
    assert result.allocation_state == "steady" and result.removed == []
    state = internal(settings, ref)
    assert state["allocationState"] == "steady"
    assert state["allocationStateTransitionTime"] == (T0 + timedelta(seconds=20)).isoformat()

    # Lowering to 1 removes the node idle the longest.
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    result = reconcile_cluster(settings, ref, T0 + timedelta(seconds=30), provider)
    assert result.removed == [first]
    assert rows(settings, ref.key)[first]["state"] == "leaving"
    assert internal(settings, ref)["allocationState"] == "resizing"
    wait_until(lambda: first not in {i.node_id for i in provider.list_instances(ref.key)})
    result = reconcile_cluster(settings, ref, T0 + timedelta(seconds=40), provider)
    assert result.dropped == [first]
    assert list(rows(settings, ref.key)) == [second]
    assert result.allocation_state == "steady" and internal(settings, ref)["allocationState"] == "steady"


def test_autoscale_follows_pending_demand(settings: Settings, provider: LocalProvider):
    ref = cluster_ref("auto1")
    put_cluster(settings.storage_connection_string, ref,
                {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 3, "initialNodeCount": 0}})
    assert reconcile_cluster(settings, ref, T0, provider).provider_target == 0
    sched_store.add_pending(settings.storage_connection_string, ref.key, "sub-nodes|rg|ws|exp|j1", "normal", T0, 2)
    result = reconcile_cluster(settings, ref, T0 + timedelta(seconds=2), provider)
    assert result.provider_target == 2 and len(result.adopted) == 2
    # Nodes still starting: the next tick does not scale up again.
    assert reconcile_cluster(settings, ref, T0 + timedelta(seconds=4), provider).adopted == []
    assert len(provider.list_instances(ref.key)) == 2
    # The demand goes away; the nodes are idle, then idle past the timeout: scaled to 0.
    client = storage.table(settings.storage_connection_string, storage.T_SCHED)
    for r in sched_store.partition(settings.storage_connection_string, ref.key):
        if r["RowKey"].startswith(sched_store.PENDING):
            client.delete_entity(r["PartitionKey"], r["RowKey"])
    for node_id in rows(settings, ref.key):
        bring_up(settings, ref.key, node_id, T0 + timedelta(seconds=5))
    assert reconcile_cluster(settings, ref, T0 + timedelta(seconds=300), provider).removed == []
    result = reconcile_cluster(settings, ref, T0 + timedelta(seconds=306), provider)
    assert len(result.removed) == 2 and result.provider_target == 0
    wait_until(lambda: not provider.list_instances(ref.key))
    reconcile_cluster(settings, ref, T0 + timedelta(seconds=310), provider)
    assert rows(settings, ref.key) == {}


def test_deleted_cluster_document_removes_everything(settings: Settings, provider: LocalProvider):
    ref = cluster_ref("gone1")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    reconcile_cluster(settings, ref, T0, provider)
    assert len(rows(settings, ref.key)) == 1
    storage.table(settings.storage_connection_string, storage.T_CLUSTERS).delete_entity(
        ref.workspace.child_pk, ref.name.lower())
    assert reconcile_cluster(settings, ref, T0, provider).deleted
    wait_until(lambda: not provider.list_instances(ref.key))
    reconcile_cluster(settings, ref.key, T0, provider)
    assert rows(settings, ref.key) == {}


def test_events_for_unknown_nodes_are_ignored(settings: Settings, provider: LocalProvider):
    ref = cluster_ref("ghost1")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 0}})
    handle_node_event(settings, event("node-registered", ref.key, "ffffff-9", inventory={"cores": 1}), T0)
    handle_node_event(settings, event("node-ready", ref.key, "ffffff-9"), T0)
    assert rows(settings, ref.key) == {}


def test_registration_before_the_reconciler_recorded_the_node(settings: Settings, provider: LocalProvider):
    ref = cluster_ref("race1")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    from shared.services.nodes import cluster_spec

    provider.reconcile(cluster_spec(ref.key, nodes.load_cluster(settings, ref.key)), 1)
    (node_id,) = [i.node_id for i in provider.list_instances(ref.key)]
    # The ready event overtakes the registration; then the registration arrives late.
    handle_node_event(settings, event("node-ready", ref.key, node_id, inventory={"cores": 2}), T0)
    handle_node_event(settings, event("node-registered", ref.key, node_id, inventory={"cores": 2}), T0)
    row = rows(settings, ref.key)[node_id]
    assert row["state"] == "idle" and row["cores"] == 2
    result = reconcile_cluster(settings, ref, T0, provider)
    assert result.adopted == [] and result.allocation_state == "steady"


def test_unusable_node_keeps_its_error(settings: Settings, provider: LocalProvider):
    ref = cluster_ref("unusable1")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    (node_id,) = reconcile_cluster(settings, ref, T0, provider).adopted
    handle_node_event(settings, event("node-registered", ref.key, node_id), T0)
    err = {"code": "SetupTaskFailed", "message": "exit code 2"}
    handle_node_event(settings, event("node-unusable", ref.key, node_id, error=err), T0)
    handle_node_event(settings, event("node-ready", ref.key, node_id), T0)  # late: ignored
    row = rows(settings, ref.key)[node_id]
    assert row["state"] == "unusable" and json.loads(row["error"]) == err
    history = [h["to"] for h in json.loads(row["history"])]
    assert history == ["starting", "preparing", "unusable"]
    # A manual cluster keeps it (and its error) in place: steady at its target.
    result = reconcile_cluster(settings, ref, T0 + timedelta(hours=1), provider)
    assert result.removed == [] and result.allocation_state == "steady"


def test_agent_that_dies_at_start_is_unusable_not_restarted(settings: Settings):
    import sys

    crashing = LocalProvider(settings.state_dir, settings.storage_connection_string,
                             command=lambda k, n, w: [sys.executable, "-c", "raise SystemExit(3)"])
    ref = cluster_ref("crash1")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    (node_id,) = reconcile_cluster(settings, ref, T0, crashing).adopted
    wait_until(lambda: [i.state for i in crashing.list_instances(ref.key)] == ["failed"])
    result = reconcile_cluster(settings, ref, T0 + timedelta(seconds=2), crashing)
    assert result.adopted == [] and result.removed == []
    row = rows(settings, ref.key)[node_id]
    assert row["state"] == "unusable"
    error = json.loads(row["error"])
    assert error["code"] == "NodeStartFailed" and "code 3" in error["message"]
    # No crash loop: later ticks keep the unusable node (manual target met) and start nothing.
    assert reconcile_cluster(settings, ref, T0 + timedelta(seconds=4), crashing).adopted == []
    assert len(crashing.list_instances(ref.key)) == 1
    # Lowering the target removes it.
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 0}})
    assert reconcile_cluster(settings, ref, T0 + timedelta(seconds=6), crashing).removed == [node_id]
    reconcile_cluster(settings, ref, T0 + timedelta(seconds=8), crashing)
    assert rows(settings, ref.key) == {}


def test_node_stuck_starting_becomes_unusable(settings: Settings, provider: LocalProvider):
    from shared.services.reaper import reap_cluster

    ref = cluster_ref("stuck1")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    (node_id,) = reconcile_cluster(settings, ref, T0, provider).adopted
    quick = dataclasses.replace(settings, node_start_timeout_s=60.0)
    assert reap_cluster(quick, ref.key, T0 + timedelta(seconds=59)).stuck == []
    assert reap_cluster(quick, ref.key, T0 + timedelta(seconds=61)).stuck == [node_id]
    row = rows(settings, ref.key)[node_id]
    assert row["state"] == "unusable" and json.loads(row["error"])["code"] == "NodeStartTimeout"
