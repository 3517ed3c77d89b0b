"""Usages of a subscription (GET .../locations/{location}/usages): clusters, and vCPUs in use in
total and per VM family, for dedicated and low-priority nodes, against `Settings.quota`.

Counted from the stored clusters of the subscription and the node rows of their sched partitions:
every node that is not lost holds its VM size's cores (`vm_sizes.size_info`, what a quota counts on
Azure, whatever the node's agent reports), in its cluster's VM family (`vm_sizes.family`) and
priority. The families Batch AI always listed are listed even at zero, then every other family in
use. Every cluster of a subscription counts in every location (the local stack has one).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from shared.adapters import sched_store, storage
from shared.adapters.compute import vm_sizes
from shared.config import Settings
from shared.domain import resources, states
from shared.domain.keys import ClusterRef, WorkspaceRef
from shared.services.api_common import store

PRIORITIES = ("dedicated", "lowpriority")
#: (name.value, name.localizedValue) words for each priority, as Batch AI wrote them.
_WORDS = {"dedicated": ("Dedicated", "Dedicated"), "lowpriority": ("LowPriority", "Low Priority")}


def _usage(name: str, localized: str, current: int, limit: int) -> dict[str, Any]:
    return {"unit": "Count", "currentValue": current, "limit": limit,
            "name": {"value": name, "localizedValue": localized}}


def cores_in_use(settings: Settings, subscription: str) -> tuple[int, Counter[tuple[str, str]]]:
    """(clusters, {(priority, family): cores of nodes not lost})."""
    clusters = 0
    cores: Counter[tuple[str, str]] = Counter()
    conn = settings.storage_connection_string
    for doc in store(settings, storage.T_CLUSTERS).scan(pk_prefix=f"{subscription.lower()}|"):
        clusters += 1
        sub, rg, ws = doc.pk.split("|")
        ref = ClusterRef(WorkspaceRef(sub, rg, ws), doc.rk)
        props = doc.data.get("properties") or {}
        priority = str(props.get("vmPriority") or "dedicated").lower()
        priority = priority if priority in PRIORITIES else "dedicated"
        size = str(props.get("vmSize") or "")
        per_node = vm_sizes.size_info(size).cores
        for row in resources.node_rows_only(sched_store.partition(conn, ref.key)):
            if row.get("state") != states.NodeState.LOST:
                cores[(priority, vm_sizes.family(size))] += per_node
    return clusters, cores


def list_usages(settings: Settings, subscription: str, location: str) -> list[dict[str, Any]]:
    clusters, cores = cores_in_use(settings, subscription)
    quota = settings.quota
    families = list(vm_sizes.LISTED_FAMILIES) + sorted({f for _, f in cores} - set(vm_sizes.LISTED_FAMILIES))
    out = [_usage("Clusters", "Clusters", clusters, quota.clusters)]
    for priority in PRIORITIES:
        word, localized = _WORDS[priority]
        total = sum(n for (p, _), n in cores.items() if p == priority)
        limit = quota.dedicated_cores if priority == "dedicated" else quota.lowpriority_cores
        out.append(_usage(f"Total Cluster {word} Regional vCPUs", f"Total Cluster {localized} Regional vCPUs",
                          total, limit))
        for family in families:
            display = vm_sizes.family_display(family)
            out.append(_usage(f"{display} Cluster {word} vCPUs", f"{display} Cluster {localized} vCPUs",
                              cores[(priority, family)], quota.family_limit(family, priority)))
    return out
