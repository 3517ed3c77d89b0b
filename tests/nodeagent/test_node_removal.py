"""A machine's node may not delete its queues (its SAS cannot): the service deletes them when the node
goes, on every path that removes a node row (the reconciler, the reaper, a deleted cluster)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters import storage
from shared.adapters.compute.port import ClusterSpec, Instance
from shared.config import Settings
from shared.services import node_state, nodes
from shared.services.cluster_reconcile import reconcile_cluster
from tests.nodeagent.conftest import new_cluster, node_of
from tests.nodeagent.service import CredentialsService


class Machines:
    """The compute port as a scale set's instances look from the service: the test says which exist."""

    name = "vmss"

    def __init__(self, node_ids: Sequence[str]) -> None:
        self.node_ids = list(node_ids)

    def reconcile(self, spec: ClusterSpec, target: int, remove: Sequence[str] = ()) -> None:
        self.node_ids = [n for n in self.node_ids if n not in remove]

    def list_instances(self, cluster_key: str) -> list[Instance]:
        return [Instance(n, "running", "10.0.0.4") for n in self.node_ids]

    def delete_cluster(self, cluster_key: str) -> None:
        self.node_ids = []


def _queues_exist(conn: str, node_id: str) -> list[bool]:
    queue = storage.node_queue_name(node_id)
    found = []
    for name in (queue, f"{queue}-poison"):
        try:
            storage.queue(conn, name).get_queue_properties()
            found.append(True)
        except ResourceNotFoundError:
            found.append(False)
    return found


def test_the_queues_of_a_vanished_machine_go_with_its_row(node_api: CredentialsService) -> None:
    key = new_cluster()
    gone, staying = node_of(key, 1), node_of(key, 2)
    settings = dataclasses.replace(node_api.settings(), provider="vmss")
    node_api.put_cluster(key, {"vmSize": "STANDARD_D1_V2", "scaleSettings": {"manual": {"targetNodeCount": 1}}})
    for node_id in (gone, staying):
        node_api.node_row(key, node_id, "idle")
        for name in (storage.node_queue_name(node_id), f"{storage.node_queue_name(node_id)}-poison"):
            storage.ensure_queue(node_api.conn, name)
    machines = Machines([staying])  # the scale set lost one instance (deleted, evicted)
    result = reconcile_cluster(settings, key, datetime.now(UTC), machines)
    assert result.dropped == [gone]
    assert nodes.get_node(settings, key, gone) is None
    assert _queues_exist(node_api.conn, gone) == [False, False]
    assert _queues_exist(node_api.conn, staying) == [True, True]


def test_deleting_a_node_row_deletes_its_queues_even_when_the_row_is_already_gone(
        node_api: CredentialsService) -> None:
    key = new_cluster()
    node_id = node_of(key, 3)
    settings: Settings = node_api.settings()
    storage.ensure_queue(node_api.conn, storage.node_queue_name(node_id))
    assert node_state.delete(settings, key, node_id)  # no row: an earlier attempt deleted it, not the queues
    assert _queues_exist(node_api.conn, node_id) == [False, False]
