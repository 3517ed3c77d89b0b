"""A simulated cluster over the storage port: job and cluster documents, node rows, node queues, events.

Each test gets its own workspace (so its own cluster partition and node queues); nodes are
simulated by writing `node|` rows and reading their queues. No node agent runs. The service tests
run twice: over the session's Azurite (the contract) and over the port's in-memory twin.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import ports
from shared.adapters import sched_store, storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.domain.keys import JobRef, WorkspaceRef
from shared.domain.messages import NodeEvent, parse_node_message
from shared.ports.rows import Row, Upsert
from shared.services import assignments, job_state
from tests.polling import wait_until  # noqa: F401 - shared by this package's tests

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class World:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn = settings.storage_connection_string
        self.tag = uuid.uuid4().hex[:8]
        self.ws = WorkspaceRef("sub1", "rg1", f"ws{self.tag}")
        self.cluster = self.ws.cluster("gpu")
        self.exp = self.ws.experiment("exp")
        self.key = self.cluster.key
        self.port = ports.of(self.conn)
        self.sched = self.port.table(storage.T_SCHED)

    def cluster_doc(self, packing: str | None = None) -> None:
        internal = {"packing": packing} if packing else {}
        ResourceStore(self.conn, storage.T_CLUSTERS).insert(self.ws.child_pk, "gpu", {
            "id": self.cluster.arm_id, "name": "gpu", "type": "Microsoft.BatchAI/workspaces/clusters",
            "properties": {"vmSize": "STANDARD_NC6", "scaleSettings": {"manual": {"targetNodeCount": 1}}},
            "internal": internal})

    def node_id(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def node(self, name: str, state: str = "idle", gpus: int = 0) -> str:
        node_id = self.node_id(name)
        self.sched.write(Upsert(self.key, sched_store.node_row(node_id), {
            "nodeId": node_id, "state": state,
            "address": f"10.0.0.{len(node_id) % 200}", "cores": 4, "memoryMb": 8192, "gpus": gpus, "jobKey": "",
            "assignmentId": "", "stateSince": T0.isoformat(), "history": "[]"}))
        self.port.queues.ensure(storage.node_queue_name(node_id))
        return node_id

    def submit(self, name: str, priority: str = "normal", node_count: int = 1, at: float = 0,
               command: str = "true", gpus_per_node: int | None = None) -> JobRef:
        ref = self.exp.job(name)
        submitted = T0 + timedelta(seconds=at)
        ResourceStore(self.conn, storage.T_JOBS).insert(self.exp.job_pk, name.lower(), {
            "id": ref.arm_id, "name": name, "type": "Microsoft.BatchAI/workspaces/experiments/jobs",
            "properties": {"cluster": {"id": self.cluster.arm_id}, "nodeCount": node_count,
                           "schedulingPriority": priority, "customToolkitSettings": {"commandLine": command},
                           "jobOutputDirectoryPathSegment": f"seg-{name}",
                           "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT",
                           **({"gpusPerNode": gpus_per_node} if gpus_per_node else {})},
            "internal": {"phase": "queued", "history": [], "attempt": 1, "retries": 0, "clusterKey": self.key,
                         "submittedAt": submitted.isoformat(), "assignmentId": None, "executionInfo": {}}})
        sched_store.add_pending(self.conn, self.key, ref.key, priority, submitted, node_count,
                                slots=gpus_per_node or 1)
        return ref

    def job(self, ref: JobRef) -> dict[str, Any]:
        doc = job_state.get(self.settings, ref)
        assert doc is not None
        return doc.data

    def internal(self, ref: JobRef) -> dict[str, Any]:
        return self.job(ref)["internal"]

    def rows(self) -> list[dict[str, Any]]:
        return sched_store.partition(self.conn, self.key)

    def node_row(self, node_id: str) -> Row:
        row = self.sched.get(self.key, sched_store.node_row(node_id))
        assert row is not None, f"no row of node {node_id}"
        return row

    def asg(self, ref: JobRef) -> assignments.AsgRow | None:
        return assignments.get(self.settings, self.key, ref.key)

    def pending_keys(self) -> list[str]:
        return [r["jobKey"] for r in self.rows() if r["RowKey"].startswith(sched_store.PENDING)]

    def messages(self, node_id: str) -> list[Any]:
        """Every message waiting on a node's queue (taken off it), parsed."""
        queue = storage.node_queue_name(node_id)
        out = []
        while batch := self.port.queues.receive(queue, count=32, visibility_timeout=30):
            for m in batch:
                out.append(parse_node_message(m.content))
                self.port.queues.delete(queue, m)
        return out

    def event(self, kind: str, node_id: str, ref: JobRef, assignment_id: str, task_index: int = 0,
              exit_code: int | None = None, stop_reason: str | None = None,
              error: dict[str, str] | None = None, at: datetime = T0,
              started_at: datetime | None = None) -> NodeEvent:
        return NodeEvent(kind=kind, cluster_key=self.key, node_id=node_id, at=at.isoformat(),
                         assignment_id=assignment_id, job_key=ref.key, task_index=task_index, exit_code=exit_code,
                         stop_reason=stop_reason, error=error,
                         started_at=started_at.isoformat() if started_at else None)


def settings_over(request: pytest.FixtureRequest, azurite_fixture: str = "storage_conn") -> Iterator[Settings]:
    """The service's settings over an Azurite (the fixture named) when the test's parameter is "azurite",
    else over a storage of the test's own in memory."""
    conn = request.getfixturevalue(azurite_fixture)
    if request.param == "memory":
        conn = ports.memory(uuid.uuid4().hex)
    yield dataclasses.replace(Settings.from_env(), storage_connection_string=conn, max_retries=2)
    ports.forget(conn)


@pytest.fixture(params=["azurite", "memory"])
def settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """The service's settings over the session's Azurite, then over a storage of the test's own in memory
    (`storage_conn` is asked for either way: it sets the environment the services read)."""
    yield from settings_over(request)


@pytest.fixture()
def world(settings: Settings) -> World:
    return World(settings)


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
