"""What the dashboard's pages show: resources read through the services, filtered by what the signed-in
principal may read (`authorization.Access`, the API's roles: an item the API would hide is not shown,
a button for an action the user may not take is not offered). Pages are refused by the route rules
(`functions.api.access.DASHBOARD_RULES`) before these run; lists inside a page are filtered here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore
from shared.config import Settings
from shared.dashboard import charts, cluster_history
from shared.decisions.scheduler import schedule
from shared.domain import rbac, resources
from shared.domain.keys import PROVIDER, ClusterRef, ExperimentRef, JobRef, WorkspaceRef, arm_names
from shared.services import clusters, experiments, jobs, scheduling, scoring, submissions, usages
from shared.services.api_common import Page, deleting
from shared.services.authorization import Access

LIST_LIMIT = 500  # items of one list a page shows
CHART_WINDOW = timedelta(hours=1)

WAITING = {
    "no-free-nodes": "every node that could run it is busy: it starts when they free up",
    "behind-reservation": "jobs ahead of it hold the nodes it needs",
    "too-large": "the cluster has fewer nodes than it needs: it waits for the cluster to grow",
    "no-ids": "the next scheduling pass places it",
    "placeable": "nodes are free: the next scheduling pass places it",
    "unindexed": "waiting for the scheduler to take it up (a retry, or a pass not yet run)",
}


def _pages(fetch: Callable[[str | None], Page], limit: int = LIST_LIMIT) -> Iterator[dict[str, Any]]:
    token: str | None = None
    count = 0
    while True:
        page = fetch(token)
        for item in page.items:
            yield item
            count += 1
            if count >= limit:
                return
        if not page.next_token:
            return
        token = page.next_token


# --- home ------------------------------------------------------------------------------------------

@dataclass
class Home:
    workspaces: list[dict[str, Any]] = field(default_factory=list)
    usages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # subscription -> usages
    rejected: list[dict[str, Any]] = field(default_factory=list)


def home(settings: Settings, access: Access) -> Home:
    view = Home()
    for doc in ResourceStore(settings.storage_connection_string, storage.T_WORKSPACES).scan():
        if not deleting(doc) and access.allowed(rbac.WORKSPACES_READ, doc.data["id"]):
            view.workspaces.append(resources.render_workspace(doc.data))
    view.workspaces.sort(key=lambda w: w["id"].lower())
    places = sorted({(arm_names(w["id"])["subscriptions"], arm_names(w["id"])["resourcegroups"])
                     for w in view.workspaces})
    for subscription in sorted({s for s, _ in places}):
        if access.allowed(rbac.USAGES_READ, f"/subscriptions/{subscription}"):
            view.usages[subscription] = usages.list_usages(settings, subscription, settings.default_location)
    for subscription, group in places:
        scope = f"/subscriptions/{subscription}/resourceGroups/{group}"
        items = _pages(lambda t, s=subscription, g=group: submissions.list_rejected(settings, s, g, 100, t), 50)
        view.rejected += [r for r in items if access.allowed(rbac.REJECTED_READ, _rejected_scope(r, scope))]
    return view


def _rejected_scope(item: dict[str, Any], group_scope: str) -> str:
    workspace = (item.get("properties") or {}).get("workspace")
    return f"{group_scope}/providers/{PROVIDER}/workspaces/{workspace}" if workspace else group_scope


# --- a workspace -----------------------------------------------------------------------------------

def workspace(settings: Settings, access: Access, ref: WorkspaceRef) -> dict[str, Any]:
    from shared.services import workspaces

    return {"workspace": workspaces.get(settings, ref).body,
            "experiments": [e for e in _pages(lambda t: experiments.list_by_workspace(settings, ref, 100, t))
                            if access.allowed(rbac.EXPERIMENTS_READ, e["id"])]}


def cluster_cards(settings: Settings, access: Access, ref: WorkspaceRef, now: datetime) -> list[dict[str, Any]]:
    cards = []
    for cluster in _pages(lambda t: clusters.list_by_workspace(settings, ref, 100, t)):
        if not access.allowed(rbac.CLUSTERS_READ, cluster["id"]):
            continue
        key = ClusterRef(ref, cluster["name"]).key
        samples = cluster_history.read(settings, key, now, CHART_WINDOW)
        cards.append({"cluster": cluster, "chart": charts.cluster_chart(samples, cluster["properties"], now)})
    return cards


def scoring_runs(settings: Settings, access: Access, ref: WorkspaceRef) -> list[dict[str, Any]]:
    runs = [r for r in _pages(lambda t: scoring.list_by_workspace(settings, ref, 100, t))
            if access.allowed(rbac.SCORING_RUNS_READ, r["id"])]
    return sorted(runs, key=lambda r: r["properties"].get("creationTime") or "", reverse=True)


# --- jobs --------------------------------------------------------------------------------------------

def experiment_jobs(settings: Settings, access: Access, ref: ExperimentRef, now: datetime) -> list[dict[str, Any]]:
    listed = [j for j in _pages(lambda t: jobs.list_by_experiment(settings, ref, 100, t))
              if access.allowed(rbac.JOBS_READ, j["id"])]
    reasons: dict[str, dict[str, str]] = {}
    for job in listed:
        if job["properties"]["executionState"] == "queued":
            cluster = resources.parse_cluster_id(job["properties"]["cluster"]["id"])
            if cluster is not None:
                key = ClusterRef(WorkspaceRef(*cluster[:3]), cluster[3]).key
                reasons.setdefault(key, waiting_reasons(settings, key, now))
                job_key = ref.job(job["name"]).key
                job["waiting"] = reasons[key].get(job_key, WAITING["unindexed"])
    return sorted(listed, key=lambda j: j["properties"]["creationTime"], reverse=True)


def waiting_reasons(settings: Settings, cluster_key: str, now: datetime) -> dict[str, str]:
    """Why each pending job of a cluster waits: the scheduler's own decision on the cluster as it is now
    (read only: nothing is committed)."""
    snap = scheduling.read_snapshot(settings, cluster_key)
    request = scheduling.request_for(snap, scheduling.cluster_packing(settings, cluster_key), now,
                                     lambda: uuid.uuid4().hex)
    reply = schedule(request)
    reasons = {w.job_key: WAITING.get(w.reason, w.reason) for w in reply.waiting}
    reasons.update({p.job_key: WAITING["placeable"] for p in reply.assignments})
    return reasons


@dataclass
class JobView:
    job: dict[str, Any]
    timeline: list[dict[str, str]]
    waiting: str | None
    can_terminate: bool
    can_delete: bool
    can_read_files: bool


def job(settings: Settings, access: Access, ref: JobRef, now: datetime) -> JobView:
    doc = jobs.get_doc(settings, ref)
    rendered = resources.render_job(doc.data)
    internal = doc.data.get("internal") or {}
    timeline = [{"at": internal.get("submittedAt") or rendered["properties"]["creationTime"], "to": "queued",
                 "reason": "submitted"}]
    timeline += [{"at": h.get("at", ""), "to": h.get("to", ""), "reason": h.get("reason", "")}
                 for h in internal.get("history") or []]
    waiting = None
    if rendered["properties"]["executionState"] == "queued":
        waiting = waiting_reasons(settings, internal["clusterKey"], now).get(ref.key, WAITING["unindexed"])
    return JobView(rendered, timeline, waiting,
                   can_terminate=not ended(rendered) and access.allowed(rbac.JOBS_TERMINATE, ref.arm_id),
                   can_delete=access.allowed(rbac.JOBS_DELETE, ref.arm_id),
                   can_read_files=access.allowed(rbac.JOBS_OUTPUT_FILES, ref.arm_id))


def ended(job_body: dict[str, Any]) -> bool:
    return job_body["properties"]["executionState"] in ("succeeded", "failed")
