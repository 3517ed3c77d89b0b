"""The reconciler, node events and the reaper with the real node agent process (python -m shared.agent)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters import sched_store, storage
from shared.adapters.compute.local import LocalProvider, NodeService, stop_all
from shared.config import Settings
from shared.domain.messages import NodeEvent
from shared.emulator.issuer import IssuerServer
from shared.services import nodes
from shared.services.cluster_reconcile import reconcile_cluster
from shared.services.reaper import reap_cluster
from tests.nodeagent import service
from tests.nodeagent.service import CredentialsService
from tests.nodes.helpers import cluster_ref, put_cluster, wait_until


@pytest.fixture(scope="module")
def node_api(api_endpoint: dict[str, str], storage_conn: str, issuer_server: IssuerServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[CredentialsService]:
    """The service's node API, where agents fetch what their messages name."""
    yield service.acquire(api_endpoint, storage_conn, issuer_server, tmp_path_factory.mktemp("node-service"))
    service.release()


@pytest.fixture()
def settings(storage_conn: str, node_api: CredentialsService, tmp_path: Path):
    s = dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn,
                            state_dir=tmp_path / "state", provider="local", heartbeat_timeout_s=3.0,
                            message_key=node_api.message_key)
    yield s
    stop_all(s.state_dir, grace_s=3.0)


@pytest.fixture()
def provider(settings: Settings, node_api: CredentialsService) -> LocalProvider:
    return LocalProvider(settings.state_dir, settings.storage_connection_string, leave_wait_s=5.0, grace_s=5.0,
                         service=NodeService(node_api.url, node_api.ca_file, node_api.message_key))


def now() -> datetime:
    return datetime.now(UTC)


def pump_node_events(settings: Settings, cluster_key: str) -> list[str]:
    """Deliver the node-* events of this cluster to the node lifecycle handler (as the trigger does)."""
    q = storage.queue(settings.storage_connection_string, storage.Q_EVENTS)
    kinds = []
    for message in q.receive_messages(max_messages=32, visibility_timeout=5):
        event = NodeEvent.from_dict(json.loads(message.content))
        if event.cluster_key != cluster_key:
            continue
        if event.kind.startswith("node-"):
            nodes.handle_node_event(settings, event, now())
            kinds.append(event.kind)
        q.delete_message(message)
    return kinds


def node_state(settings: Settings, key: str, node_id: str) -> str | None:
    row = nodes.get_node(settings, key, node_id)
    return row["state"] if row else None


def test_agent_joins_and_leaves(settings: Settings, provider: LocalProvider):
    ref = cluster_ref("agent1")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    (node_id,) = reconcile_cluster(settings, ref, now(), provider).adopted

    def joined() -> bool:
        pump_node_events(settings, ref.key)
        return node_state(settings, ref.key, node_id) == "idle"

    wait_until(joined, timeout=60, interval=0.3)
    row = nodes.get_node(settings, ref.key, node_id)
    assert row["cores"] == os.cpu_count() and row["memoryMb"] > 0
    beat = storage.container(settings.storage_connection_string, storage.C_HEARTBEATS).get_blob_client(
        storage.heartbeat_blob(ref.key, node_id))
    assert wait_until(beat.exists, timeout=15) and beat.get_blob_properties().metadata["pid"]
    assert reconcile_cluster(settings, ref, now(), provider).allocation_state == "steady"

    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 0}})
    assert reconcile_cluster(settings, ref, now(), provider).removed == [node_id]
    # The agent takes its Leave and exits on its own, before any signal.
    wait_until(lambda: not provider.list_instances(ref.key), timeout=30, interval=0.2)
    log = (settings.state_dir / "nodes" / node_id / "agent.log").read_text()
    assert "agent stopping (node-removed)" in log  # it left on the Leave message
    reconcile_cluster(settings, ref, now(), provider)
    assert node_state(settings, ref.key, node_id) is None


def test_reaper_marks_a_killed_agent_lost(settings: Settings, provider: LocalProvider):
    ref = cluster_ref("agent2")
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    (node_id,) = reconcile_cluster(settings, ref, now(), provider).adopted

    def joined() -> bool:
        pump_node_events(settings, ref.key)
        return node_state(settings, ref.key, node_id) == "idle"

    wait_until(joined, timeout=60, interval=0.3)
    assert reap_cluster(settings, ref.key, now()).lost == []  # heartbeating
    record = json.loads((settings.state_dir / "nodes" / node_id / "instance.json").read_text())
    os.kill(record["pid"], signal.SIGKILL)

    result = wait_until(lambda: reap_cluster(settings, ref.key, now()).lost, timeout=30, interval=0.5)
    assert result == [node_id]
    assert node_state(settings, ref.key, node_id) is None
    assert not provider.list_instances(ref.key)  # the dead instance's record is retired
    # The reconciler replaces it: the manual target says 1.
    replacement = reconcile_cluster(settings, ref, now(), provider).adopted
    assert len(replacement) == 1 and replacement[0] != node_id
    assert sched_store.partition(settings.storage_connection_string, ref.key)
