"""Each cluster's size over time, for the dashboard's node-count chart: table `clusterhistory` (owned here).

The reconciler records a sample on every tick (`record`: node counts by state, queued jobs and the nodes
they ask for, the autoscaler's target). One row per cluster per minute (PartitionKey = cluster key, RowKey =
the minute's slot in a ring of RETENTION_MINUTES slots): a tick overwrites its minute's row, so the table
never holds more than RETENTION_MINUTES rows per cluster and needs no pruning; `read` keeps the rows that
are recent enough and orders them by time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters import storage
from shared.config import Settings
from shared.domain import states

T_CLUSTER_HISTORY = "clusterhistory"
RETENTION_MINUTES = 24 * 60


@dataclass(frozen=True)
class Sample:
    at: datetime  # the minute (UTC) the sample stands for
    nodes: int  # nodes the cluster has (lost ones aside), as currentNodeCount counts them
    idle: int
    running: int
    preparing: int
    unusable: int
    leaving: int
    queued_jobs: int  # jobs waiting for nodes
    queued_nodes: int  # nodes those jobs ask for
    wanted: int  # the autoscaler's target node count

    def entity(self, cluster_key: str) -> dict[str, Any]:
        slot = int(self.at.timestamp() // 60) % RETENTION_MINUTES
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "at"}
        return {"PartitionKey": cluster_key, "RowKey": f"{slot:04d}", "at": self.at.isoformat(), **row}

    @classmethod
    def of(cls, entity: Mapping[str, Any]) -> Sample:
        return cls(at=datetime.fromisoformat(str(entity["at"])),
                   **{f.name: int(entity.get(f.name) or 0) for f in fields(cls) if f.name != "at"})


def sample(now: datetime, node_rows: Iterable[Mapping[str, Any]], pending_node_counts: Sequence[int],
           wanted: int) -> Sample:
    """The sample of one observation (pure): node rows of the sched partition, the node counts of pending jobs."""
    counts = dict.fromkeys(("idle", "running", "preparing", "unusable", "leaving"), 0)
    nodes = 0
    for row in node_rows:
        try:
            state = states.NodeState(row.get("state"))
        except ValueError:
            continue
        counts[states.NODE_COUNT_BUCKET[state].removesuffix("NodeCount")] += 1
        nodes += state != states.NodeState.LOST
    minute = now.replace(second=0, microsecond=0)
    return Sample(minute, nodes, queued_jobs=len(pending_node_counts), queued_nodes=sum(pending_node_counts),
                  wanted=wanted, **counts)


def record(settings: Settings, cluster_key: str, now: datetime, node_rows: Iterable[Mapping[str, Any]],
           pending_node_counts: Sequence[int], wanted: int) -> None:
    """Write this tick's sample over its minute's row (one write, no read)."""
    entity = sample(now, node_rows, pending_node_counts, wanted).entity(cluster_key)
    _table(settings).upsert_entity(entity, mode=UpdateMode.REPLACE)


def read(settings: Settings, cluster_key: str, now: datetime, window: timedelta = timedelta(hours=1)) -> list[Sample]:
    """The cluster's samples of the last `window` (at most the retention), oldest first."""
    since = now - min(window, timedelta(minutes=RETENTION_MINUTES - 1))
    client = storage.table(settings.storage_connection_string, T_CLUSTER_HISTORY)
    try:
        rows = list(client.query_entities("PartitionKey eq @pk", parameters={"pk": cluster_key}))
    except ResourceNotFoundError:  # nothing recorded yet anywhere
        return []
    samples = [Sample.of(r) for r in rows]
    return sorted((s for s in samples if s.at >= since.replace(second=0, microsecond=0)), key=lambda s: s.at)


def _table(settings: Settings) -> TableClient:
    conn = settings.storage_connection_string
    _created(conn)
    return storage.table(conn, T_CLUSTER_HISTORY)


@lru_cache(maxsize=16)
def _created(conn: str) -> None:
    """The table exists (made once per process and account: it is not among the tables the stack makes)."""
    storage.table_service(conn).create_table_if_not_exists(T_CLUSTER_HISTORY)
