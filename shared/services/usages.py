"""Usages of a subscription (GET .../locations/{location}/usages): clusters, and vCPUs in use in
total and per VM family, for dedicated and low-priority nodes, against `Settings.quota`; and the
quota checks of cluster create and resize, the only place those limits are enforced.

Counted from the stored clusters of the subscription and the node rows of their sched partitions:
every node that is not lost holds its VM size's cores (`vm_sizes.size_info`, what a quota counts on
Azure, whatever the node's agent reports), in its cluster's VM family (`vm_sizes.family`) and
priority. The families Batch AI always listed are listed even at zero, then every other family in
use. Every cluster of a subscription counts in every location (the local stack has one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from shared.adapters import sched_store, storage
from shared.adapters.compute import vm_sizes
from shared.config import Settings
from shared.domain import resources, states, validation
from shared.domain.errors import ApiError
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


# Quota checks -------------------------------------------------------------------------------------
# A cluster holds the cores of the most nodes it may have (a manual cluster's targetNodeCount, an
# autoscale cluster's maximumNodeCount), so the clusters admitted can never together exceed a limit,
# whatever their autoscalers do later. Refusals are ARM's: 409 ClusterQuotaReached (Batch AI's
# answer for its cluster count), 409 OperationNotAllowed with the compute provider's wording for cores.

def _priority(props: Mapping[str, Any]) -> str:
    priority = str(props.get("vmPriority") or "dedicated").lower()
    return priority if priority in PRIORITIES else "dedicated"


def claimed_nodes(props: Mapping[str, Any]) -> int:
    if props.get("nodeSource") == "bringYourOwn":
        return 0  # its machines are its owner's: they take none of the subscription's cores
    scale = props.get("scaleSettings") or {}
    if scale.get("autoScale"):
        return int(scale["autoScale"]["maximumNodeCount"])
    return int((scale.get("manual") or {}).get("targetNodeCount") or 0)


def _claims(settings: Settings, subscription: str, excluded: ClusterRef) -> tuple[int, Counter[tuple[str, str]]]:
    """(other clusters, {(priority, family): cores they hold}) of the subscription, `excluded` aside."""
    clusters = 0
    cores: Counter[tuple[str, str]] = Counter()
    for doc in store(settings, storage.T_CLUSTERS).scan(pk_prefix=f"{subscription.lower()}|"):
        if (doc.pk, doc.rk) == (excluded.workspace.child_pk, excluded.name.lower()):
            continue
        props = doc.data.get("properties") or {}
        size = str(props.get("vmSize") or "")
        clusters += 1
        cores[(_priority(props), vm_sizes.family(size))] += claimed_nodes(props) * vm_sizes.size_info(size).cores
    return clusters, cores


def _cores_refused(what: str, location: str, limit: int, usage: int, wanted: int) -> ApiError:
    return ApiError(409, "OperationNotAllowed", (
        f"Operation could not be completed as it results in exceeding approved {what} quota. Additional details - "
        f"Location: {location}, Current Limit: {limit}, Current Usage: {usage}, Additional Required: {wanted}, "
        f"(Minimum) New Limit Required: {usage + wanted}. Clusters hold the vCPUs of their targetNodeCount "
        f"(manual) or maximumNodeCount (autoScale); lower those of other clusters or raise the quota."))


def check_quota(settings: Settings, ref: ClusterRef, props: Mapping[str, Any], new: bool) -> None:
    """Refuse a cluster (`new`) or a scale change whose nodes would pass the subscription's quotas."""
    quota = settings.quota
    others, held = _claims(settings, ref.workspace.subscription, ref)
    if new and others + 1 > quota.clusters:
        raise ApiError(409, "ClusterQuotaReached", (
            f"Operation results in exceeding quota limits of Microsoft.BatchAI/clusters. Maximum allowed: "
            f"{quota.clusters}, Current in use: {others}. Please contact support to increase the quota for "
            f"resource type Microsoft.BatchAI/clusters"))
    size = str(props.get("vmSize") or "")
    priority, family = _priority(props), vm_sizes.family(size)
    wanted = claimed_nodes(props) * vm_sizes.size_info(size).cores
    if wanted == 0:
        return
    location = settings.default_location
    family_usage = held[(priority, family)]
    family_limit = quota.family_limit(family, priority)
    word = _WORDS[priority][1]
    if family_usage + wanted > family_limit:
        raise _cores_refused(f"{vm_sizes.family_display(family)} {word} Cores", location, family_limit,
                             family_usage, wanted)
    total = sum(n for (p, _), n in held.items() if p == priority)
    limit = quota.dedicated_cores if priority == "dedicated" else quota.lowpriority_cores
    if total + wanted > limit:
        raise _cores_refused(f"Total Regional {word} Cores", location, limit, total, wanted)


def node_ceiling(settings: Settings, props: Mapping[str, Any]) -> tuple[int, str]:
    """The most nodes any cluster of this VM size and priority may ever have, and why."""
    size = str(props.get("vmSize") or "")
    priority, family = _priority(props), vm_sizes.family(size)
    cores = max(1, vm_sizes.size_info(size).cores)
    quota = settings.quota
    limit = min(quota.family_limit(family, priority),
                quota.dedicated_cores if priority == "dedicated" else quota.lowpriority_cores)
    if limit // cores < validation.MAX_NODES:
        return limit // cores, (f"its VM size {size} has {cores} vCPUs and the {_WORDS[priority][1].lower()} quota "
                                f"of {vm_sizes.family_display(family)} allows {limit} vCPUs")
    return validation.MAX_NODES, "a cluster has at most that many nodes"
