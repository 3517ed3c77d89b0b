"""Bring-your-own clusters: the size decision leaves them alone (table tests), and the reconciler with
their provider against real Azurite: a joined machine is a node (its events accepted), one that did not
join is not, nothing is started or taken out whatever the scale settings say, and a revoked join token
loses its nodes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters import join_tokens, node_tokens, sched_store
from shared.adapters.compute.local import LocalProvider, stop_all
from shared.config import Settings
from shared.decisions.autoscaler import RESIZING, STEADY, InstanceView, NodeView, ScaleInput, ScalePolicy, decide
from shared.services import nodes
from shared.services.cluster_reconcile import reconcile_cluster
from shared.services.join_tokens import node_id_for
from shared.services.nodes import handle_node_event
from tests.nodes.helpers import cluster_ref, put_cluster
from tests.nodes.test_reconcile import bring_up, event, rows

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BYO = ScalePolicy.from_properties({"nodeSource": "bringYourOwn",
                                   "scaleSettings": {"autoScale": {"minimumNodeCount": 3, "maximumNodeCount": 5}}})


def idle(node_id: str, for_s: float) -> NodeView:
    since = NOW - timedelta(seconds=for_s)
    return NodeView(node_id, "idle", idle_since=since, state_since=since)


def decide_byo(rows_: list[NodeView], instances: list[InstanceView], pending: list[int]):
    return decide(ScaleInput(BYO, rows_, instances, pending, NOW, 300.0, first_reconcile=True))


def test_the_policy_of_a_bring_your_own_cluster_ignores_its_scale_settings() -> None:
    assert BYO.bring_your_own and not BYO.is_manual
    assert not ScalePolicy.from_properties({"nodeSource": "provider", "scaleSettings": {}}).bring_your_own


@pytest.mark.parametrize(("name", "rows_", "instances", "pending", "target", "remove", "lost", "alloc"), [
    ("no machine joined: nothing is started for min or demand", [], [], [1, 2], 0, [], [], STEADY),
    ("idle far past the timeout stays", [idle("a", 9999), idle("b", 9999)],
     [InstanceView("a", "running"), InstanceView("b", "running")], [], 2, [], [], STEADY),
    ("demand starts nothing more", [idle("a", 1)], [InstanceView("a", "running")], [4, 4], 1, [], [], STEADY),
    ("a machine that joined is adopted", [], [InstanceView("a", "running")], [], 1, [], [], RESIZING),
    ("a revoked node is lost and removed", [idle("a", 5), NodeView("b", "running", job_key="j")],
     [InstanceView("a", "failed"), InstanceView("b", "running")], [], 1, ["a"], ["a"], RESIZING),
    ("revoked while preparing is lost too", [NodeView("a", "preparing")], [InstanceView("a", "failed")], [],
     0, ["a"], ["a"], RESIZING),
    ("unusable stays (its owner sees why)", [NodeView("a", "unusable", state_since=NOW - timedelta(days=1))],
     [InstanceView("a", "running")], [1], 1, [], [], STEADY),
])
def test_table(name, rows_, instances, pending, target, remove, lost, alloc) -> None:
    d = decide_byo(rows_, instances, pending)
    assert (d.provider_target, d.remove, [n.node_id for n in d.lost], d.allocation_state) == \
        (target, remove, lost, alloc), name
    assert d.drain == [] and d.start_failed == [], name


@pytest.fixture()
def settings(storage_conn: str, tmp_path: Path):
    s = dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn,
                            state_dir=tmp_path / "state", provider="local", idle_timeout_s=300.0)
    yield s
    stop_all(s.state_dir, grace_s=2.0)


def joined_node(settings: Settings, key: str, name: str, expires: datetime) -> tuple[str, str]:
    """A machine that exchanged join token `jt-<name>` (as `/nodeagent/join` does): (node id, token name)."""
    conn = settings.storage_connection_string
    token_name = f"jt-{name}"
    join_tokens.store(conn, key, token_name, join_tokens.mint(key, token_name), expires, NOW)
    node_id = node_id_for(key, name)
    node_tokens.store(conn, key, node_id, node_tokens.mint(), join_token=token_name)
    return node_id, token_name


def test_a_bring_your_own_cluster_runs_the_machines_that_joined_and_starts_none(settings: Settings) -> None:
    ref = cluster_ref("byo1")
    put_cluster(settings.storage_connection_string, ref,
                {"autoScale": {"minimumNodeCount": 2, "maximumNodeCount": 4, "initialNodeCount": 2}},
                nodeSource="bringYourOwn")
    sched_store.add_pending(settings.storage_connection_string, ref.key, "sub-nodes|rg|ws|exp|j1", "normal", NOW, 1)
    first = reconcile_cluster(settings, ref, NOW)
    assert (first.provider_target, first.adopted) == (0, [])

    handle_node_event(settings, event("node-registered", ref.key, node_id_for(ref.key, "stranger"),
                                      inventory={"cores": 1}), NOW)
    assert rows(settings, ref.key) == {}  # a machine that did not join is no node

    node_id, token = joined_node(settings, ref.key, "box", datetime.now(UTC) + timedelta(hours=1))
    bring_up(settings, ref.key, node_id, NOW)  # its registration is accepted before any tick adopts it
    assert rows(settings, ref.key)[node_id]["state"] == "idle"
    later = reconcile_cluster(settings, ref, NOW + timedelta(hours=5))  # idle far past the idle timeout
    assert (later.provider_target, later.removed, later.dropped) == (1, [], [])
    assert rows(settings, ref.key)[node_id]["state"] == "idle"
    assert LocalProvider(settings.state_dir, settings.storage_connection_string).list_instances(ref.key) == []
    cluster = nodes.load_cluster(settings, ref.key)
    assert cluster is not None and cluster.data["internal"]["allocationState"] == "steady"

    assert join_tokens.revoke(settings.storage_connection_string, ref.key, token)
    revoked = reconcile_cluster(settings, ref, NOW + timedelta(hours=5, seconds=1))
    assert revoked.dropped == [node_id] and revoked.removed == [node_id]
    assert rows(settings, ref.key) == {}
    [credential] = node_tokens.joined(settings.storage_connection_string, ref.key)
    assert credential["RowKey"] == node_id and credential["retiredAt"]  # its credential is retired too
    handle_node_event(settings, event("node-registered", ref.key, node_id, inventory={"cores": 1}), NOW)
    assert rows(settings, ref.key) == {}  # and it cannot come back without joining again


def test_deleting_a_bring_your_own_cluster_revokes_its_tokens_and_credentials(settings: Settings) -> None:
    from shared.adapters import storage

    ref = cluster_ref("byo2")
    conn = settings.storage_connection_string
    put_cluster(conn, ref, {"manual": {"targetNodeCount": 0}}, nodeSource="bringYourOwn")
    node_id, _ = joined_node(settings, ref.key, "box", datetime.now(UTC) + timedelta(hours=1))
    bring_up(settings, ref.key, node_id, NOW)
    storage.table(conn, storage.T_CLUSTERS).delete_entity(ref.workspace.child_pk, ref.name.lower())
    assert reconcile_cluster(settings, ref, NOW).deleted
    assert join_tokens.list_tokens(conn, ref.key) == [] and node_tokens.joined(conn, ref.key) == []
    assert rows(settings, ref.key) == {}


def test_a_join_token_names_its_cluster_and_itself() -> None:
    key = "00000000-0000-0000-0000-000000000000|rg|ws|own"
    token = join_tokens.mint(key, "jt-1")
    assert join_tokens.parse(token) == (key, "jt-1") and token != join_tokens.mint(key, "jt-1")
    for bad in ("", "bainode1.x", join_tokens.PREFIX, f"{join_tokens.PREFIX}e30", f"{join_tokens.PREFIX}e30.s",
                f"{join_tokens.PREFIX}!!!.s", f"{join_tokens.PREFIX}WzFd.s"):
        assert join_tokens.parse(bad) is None, bad


@pytest.mark.parametrize(("name", "tail"), [("box", "box"), ("GPU Box_1", "gpu-box-1"), ("---", "node"),
                                            ("x" * 80, "x" * 40), ("é", "node")])
def test_node_ids_of_joined_machines_are_queue_names(name: str, tail: str) -> None:
    import re

    node_id = node_id_for("sub|rg|ws|own", name)
    assert node_id.endswith(f"-{tail}") and node_id.startswith("byo")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", node_id) and len(f"node-{node_id}") <= 63
    assert node_id_for("sub|rg|ws|other", name) != node_id  # one name, two clusters: two nodes


def test_a_joined_machine_that_stops_beating_is_lost_and_must_join_again(settings: Settings) -> None:
    from shared.services.reaper import reap_cluster

    ref = cluster_ref("byo3")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 0}},
                nodeSource="bringYourOwn")
    node_id, _ = joined_node(settings, ref.key, "quiet", datetime.now(UTC) + timedelta(hours=1))
    bring_up(settings, ref.key, node_id, NOW)  # registered at NOW; it never beats
    assert reap_cluster(settings, ref.key, NOW + timedelta(seconds=settings.heartbeat_timeout_s / 2)).lost == []
    assert reap_cluster(settings, ref.key, NOW + timedelta(seconds=settings.heartbeat_timeout_s + 1)).lost == [node_id]
    assert rows(settings, ref.key) == {}
    [credential] = node_tokens.joined(settings.storage_connection_string, ref.key)
    assert credential["retiredAt"]  # its token is valid, the node is not: it joins again to come back
    later = reconcile_cluster(settings, ref, NOW + timedelta(hours=1))
    assert (later.adopted, later.provider_target) == ([], 0)
