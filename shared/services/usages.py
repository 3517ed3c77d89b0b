"""Usages of a subscription (GET .../locations/{location}/usages): clusters and vCPUs in use.

Counted from the stored clusters of the subscription and the node rows of their sched partitions
(nodes not lost; a node's `cores` from its inventory, 1 when not reported yet), split by the
cluster's vmPriority, against the quota limits of `Settings.quota`. Every cluster of a subscription
counts in every location (the local stack has one).
"""

from __future__ import annotations

from typing import Any

from shared.adapters import sched_store, storage
from shared.config import Settings
from shared.domain import resources, states
from shared.domain.keys import ClusterRef, WorkspaceRef
from shared.services.api_common import store


def _usage(name: str, localized: str, current: int, limit: int) -> dict[str, Any]:
    return {"unit": "Count", "currentValue": current, "limit": limit,
            "name": {"value": name, "localizedValue": localized}}


def list_usages(settings: Settings, subscription: str, location: str) -> list[dict[str, Any]]:
    clusters = 0
    cores = {"dedicated": 0, "lowpriority": 0}
    conn = settings.storage_connection_string
    for doc in store(settings, storage.T_CLUSTERS).scan(pk_prefix=f"{subscription.lower()}|"):
        clusters += 1
        sub, rg, ws = doc.pk.split("|")
        ref = ClusterRef(WorkspaceRef(sub, rg, ws), doc.rk)
        priority = doc.data["properties"].get("vmPriority", "dedicated")
        for row in resources.node_rows_only(sched_store.partition(conn, ref.key)):
            if row.get("state") != states.NodeState.LOST:
                cores[priority if priority in cores else "dedicated"] += int(row.get("cores") or 1)
    quota = settings.quota
    return [
        _usage("Clusters", "Clusters", clusters, quota.clusters),
        _usage("Total Cluster Dedicated Regional vCPUs", "Total Cluster Dedicated Regional vCPUs",
               cores["dedicated"], quota.dedicated_cores),
        _usage("Total Cluster LowPriority Regional vCPUs", "Total Cluster Low Priority Regional vCPUs",
               cores["lowpriority"], quota.lowpriority_cores),
    ]
