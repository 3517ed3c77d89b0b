"""Helpers of the node tests: polling with a deadline, a stand-in node process, cluster documents."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from shared.adapters import storage
from shared.adapters.resource_store import Doc, ResourceStore
from shared.domain.keys import ClusterRef, WorkspaceRef
from tests.polling import wait_until  # noqa: F401 - shared by this package's tests

# A process that stands in for a node agent: lives until SIGTERM, notes SIGUSR1 in its workdir.
STAND_IN = """
import pathlib, signal, sys
workdir = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGUSR1, lambda *_: (workdir / "preempt-notice").write_text("1"))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
(workdir / "started").write_text("1")
while True:
    signal.pause()  # until SIGTERM ends it (SIGUSR1 only leaves a notice)
"""


def stand_in(cluster_key: str, node_id: str, workdir: Path) -> list[str]:
    return [sys.executable, "-c", STAND_IN, str(workdir)]


def put_cluster(conn: str, ref: ClusterRef, scale: dict[str, Any], **props: Any) -> Doc:
    """Store a cluster document the way the API does (ARM JSON + internal)."""
    store = ResourceStore(conn, storage.T_CLUSTERS)
    data = {"id": ref.arm_id, "name": ref.name, "type": "Microsoft.BatchAI/workspaces/clusters",
            "properties": {"vmSize": "STANDARD_D1_V2", "vmPriority": "dedicated", "scaleSettings": scale,
                           "provisioningState": "succeeded", **props},
            "internal": {}}
    existing = store.get(ref.workspace.child_pk, ref.name.lower())
    if existing is None:
        return store.insert(ref.workspace.child_pk, ref.name.lower(), data)
    return store.replace(existing, {**existing.data, "properties": data["properties"]})


def cluster_ref(name: str) -> ClusterRef:
    return WorkspaceRef("sub-nodes", "rg", "ws").cluster(name)
