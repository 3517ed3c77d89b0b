"""Jobs linked to other jobs: array parents and jobs waiting on dependencies. Owns the table
`joblinks`, the index of that live work: one row per array parent not ended (partition "array",
row the parent's key) and one row per (dependency, waiting job) (partition "dep|<dependency key>",
row the waiting job's key). Rows are written before the job document and removed once the job no
longer needs them, so a timer reads live work only.

Two triggers move linked jobs, both at-least-once and idempotent:
- a job's end (`job_ended`, called by `job_state` on every move to an end) or removal
  (`job_removed`, by `removal`): its array parent advances, and the jobs waiting on it are evaluated;
- the safety timer (`reconcile_all`): every live row, for whatever an end's handling missed.
A job linked this way never enters the pending index by itself (`indexable`): an array parent never
does, its children do; a waiting job does once its dependencies hold (`job_dependencies`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import ports
from shared.adapters import storage
from shared.adapters.resource_store import Doc, ResourceStore
from shared.config import Settings
from shared.decisions.arrays import ArrayState, child_name_length
from shared.domain import job_links as rules
from shared.domain.errors import bad_request
from shared.domain.keys import ClusterRef, JobRef
from shared.ports.contract import Table
from shared.ports.rows import Delete, Query, Row, Upsert
from shared.services import job_state
from shared.services.guarded import each

ARRAYS = "array"
DEPENDENCY = "dep|"
#: A row whose job does not exist this long after the row was written is a create that failed.
ORPHAN_AFTER = timedelta(minutes=5)


def cluster_live(settings: Settings, cluster_key: str) -> bool:
    """Whether the cluster exists and is not being deleted (new work may go to it)."""
    ref = ClusterRef.from_key(cluster_key)
    doc = ResourceStore(settings.storage_connection_string, storage.T_CLUSTERS).get(ref.workspace.child_pk,
                                                                                    ref.name.lower())
    return doc is not None and not (doc.data.get("internal") or {}).get("deletingSince")


def _table(settings: Settings) -> Table:
    return ports.of(settings.storage_connection_string).table(storage.T_JOB_LINKS)


def indexable(data: dict[str, Any]) -> bool:
    """Whether the job goes into the pending index (not an array parent, not waiting)."""
    internal = data.get("internal") or {}
    return not internal.get("array") and not internal.get("waitingReason")


def prepare(settings: Settings, ref: JobRef, props: dict[str, Any]) -> dict[str, Any]:
    """The `internal` fields of a new job that its links need; 400 for a dependency that does not
    exist or an array whose child names would be too long."""
    out: dict[str, Any] = {}
    array = props.get("array")
    if array:
        if child_name_length(ref.name, array["count"]) > 64:
            raise bad_request(f"Invalid value for 'properties.array.count': the child jobs are named "
                              f"'{ref.name}-<index>', which must fit 64 characters.", "properties.array.count",
                              code="InvalidRequestContent")
        out["array"] = ArrayState(array["count"], array["maxConcurrent"]).to_dict()
    deps = []
    for i, entry in enumerate(props.get("dependsOn") or []):
        dep = rules.dependency_ref(ref, entry["job"], i)
        doc = job_state.get(settings, dep)
        if doc is None:
            raise bad_request(f"Invalid value for 'properties.dependsOn[{i}].job': the job '{entry['job']}' does "
                              f"not exist.", f"properties.dependsOn[{i}].job", code="InvalidRequestContent")
        name = doc.data["name"] if dep.experiment.name.lower() == ref.experiment.name.lower() \
            else f"{dep.experiment.name}/{doc.data['name']}"
        deps.append({"key": dep.key, "name": name, "condition": entry["condition"]})
    if deps:
        out.update(dependencies=deps, waitingReason=rules.WAITING_REASON)
    return out


def index(settings: Settings, ref: JobRef, links: dict[str, Any], now: datetime | None = None) -> None:
    """The rows of a job about to be created (before its document: a crash leaves an orphan row,
    never a linked job no timer finds)."""
    table, written = _table(settings), {"written": (now or datetime.now(UTC)).isoformat()}
    if links.get("array"):
        table.write(Upsert(ARRAYS, ref.key, written))
    for dep in links.get("dependencies") or []:
        table.write(Upsert(DEPENDENCY + dep["key"], ref.key, written))


def forget(settings: Settings, partition: str, key: str) -> None:
    _table(settings).write(Delete(partition, key))


def forget_waiting(settings: Settings, ref: JobRef, dependencies: list[dict[str, Any]]) -> None:
    for dep in dependencies:
        forget(settings, DEPENDENCY + dep["key"], ref.key)


def start(settings: Settings, ref: JobRef, now: datetime) -> None:
    """Right after a linked job's create: evaluate its dependencies, or write its first children."""
    from shared.services import job_arrays, job_dependencies

    doc = job_state.get(settings, ref)
    if doc is None:
        return
    if (doc.data.get("internal") or {}).get("waitingReason"):
        job_dependencies.evaluate(settings, ref, now)
    else:
        job_arrays.advance(settings, ref, now)


def job_ended(settings: Settings, ref: JobRef, doc: Doc, now: datetime) -> None:
    from shared.services import job_arrays

    parent = (doc.data.get("internal") or {}).get("arrayParent")
    if parent:
        job_arrays.advance(settings, JobRef.from_key(parent["job"]), now)
    job_removed(settings, ref, now)


def job_removed(settings: Settings, ref: JobRef, now: datetime) -> None:
    """Evaluate the jobs waiting on `ref` (it ended, or its document was deleted)."""
    from shared.services import job_dependencies

    rows = _table(settings).query(Query(pk=DEPENDENCY + ref.key, select=()))
    for row in list(rows):
        job_dependencies.evaluate(settings, JobRef.from_key(row["RowKey"]), now)


@dataclass
class LinksTick:
    arrays: list[str] = field(default_factory=list)  # parents advanced
    waiting: list[str] = field(default_factory=list)  # waiting jobs evaluated
    orphans: int = 0  # rows removed whose job never came to exist


def reconcile_all(settings: Settings, now: datetime) -> LinksTick:
    """Advance every live array parent and evaluate every waiting job; one failing job never stops
    the others (the failures are raised together after)."""
    from shared.services import job_arrays, job_dependencies

    result = LinksTick()
    rows = list(_table(settings).query(Query()))
    parents = [r for r in rows if r["PartitionKey"] == ARRAYS]
    waiting: dict[str, list[Row]] = {}
    for row in rows:
        if row["PartitionKey"].startswith(DEPENDENCY):
            waiting.setdefault(row["RowKey"], []).append(row)

    def advance(row: Row) -> None:
        ref = JobRef.from_key(row["RowKey"])
        if job_arrays.advance(settings, ref, now) is None and _orphan(row, now):
            forget(settings, ARRAYS, ref.key)
            result.orphans += 1
        result.arrays.append(ref.key)

    def evaluate(key: str) -> None:
        ref = JobRef.from_key(key)
        if job_dependencies.evaluate(settings, ref, now) is None:
            for row in waiting[key]:
                if _orphan(row, now):
                    forget(settings, row["PartitionKey"], key)
                    result.orphans += 1
        result.waiting.append(key)

    each(parents, advance, "advancing the array job")
    each(sorted(waiting), evaluate, "evaluating the dependencies of")
    return result


def _orphan(row: Row, now: datetime) -> bool:
    written = row.get("written")
    return written is None or now - datetime.fromisoformat(written) > ORPHAN_AFTER
