"""Batch-scoring decisions (pure): splitting items into chunks, settling a chunk's attempt into item
outcomes and a retry, counting progress, and judging the run against its error threshold.

A chunk is a dict kept in the run document:
``{"index", "items": [all its item names], "todo": [items of the current attempt], "attempt",
"submitted": bool, "done": bool, "succeeded": {item: [output blob names]}, "failed": {item: reason},
"jobsFailed": int}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.domain.scoring import ItemResult, Threshold


def chunk_items(items: list[str], per_job: int) -> list[list[str]]:
    """Items in order, `per_job` at a time (the last chunk may be smaller)."""
    if per_job < 1:
        raise ValueError("per_job must be at least 1")
    return [items[i:i + per_job] for i in range(0, len(items), per_job)]


def new_chunks(items: list[str], per_job: int) -> list[dict[str, Any]]:
    return [{"index": i, "items": part, "todo": list(part), "attempt": 1, "submitted": False, "done": False,
             "succeeded": {}, "failed": {}, "jobsFailed": 0}
            for i, part in enumerate(chunk_items(items, per_job))]


@dataclass(frozen=True)
class AttemptEnd:
    """What one ended attempt of a chunk's job told us."""
    job_succeeded: bool
    job_error: str | None  # the job's error or exit code, for items it did not report
    results: dict[str, ItemResult] | None  # the job's results file (None: none was written)
    outputs: dict[str, list[str]] = field(default_factory=dict)  # item -> output blob names (copied)


def settle_attempt(chunk: dict[str, Any], end: AttemptEnd, max_retries: int) -> dict[str, Any]:
    """The chunk after its current attempt ended: item outcomes recorded; the items that failed are
    tried again (a new attempt, not yet submitted) while attempts remain, else recorded as failed."""
    out = {**chunk, "succeeded": dict(chunk["succeeded"]), "failed": dict(chunk["failed"])}
    failed_now: dict[str, str] = {}
    for item in chunk["todo"]:
        result = end.results.get(item) if end.results is not None else None
        if result is None:
            if end.results is None and end.job_succeeded:
                out["succeeded"][item] = end.outputs.get(item, [])
                continue
            reason = end.job_error or "the job did not report this item"
            failed_now[item] = reason if not end.job_succeeded else "the job did not report this item"
        elif result.status == "succeeded":
            out["succeeded"][item] = end.outputs.get(item, [])
        else:
            failed_now[item] = result.error or "failed"
    if not end.job_succeeded:
        out["jobsFailed"] = chunk.get("jobsFailed", 0) + 1
    if failed_now and chunk["attempt"] <= max_retries:
        out.update(todo=[i for i in chunk["todo"] if i in failed_now], attempt=chunk["attempt"] + 1,
                   submitted=False, done=False)
        return out
    for item, reason in failed_now.items():
        out["failed"][item] = reason
    out.update(todo=[], done=True)
    return out


def progress(chunks: list[dict[str, Any]], running_jobs: int = 0) -> dict[str, Any]:
    items_total = sum(len(c["items"]) for c in chunks)
    succeeded = sum(len(c["succeeded"]) for c in chunks)
    failed = sum(len(c["failed"]) for c in chunks)
    done = [c for c in chunks if c["done"]]
    return {
        "items": {"total": items_total, "succeeded": succeeded, "failed": failed,
                  "pending": items_total - succeeded - failed},
        "jobs": {"total": len(chunks), "succeeded": sum(1 for c in done if not c["failed"]),
                 "failed": sum(1 for c in done if c["failed"]), "running": running_jobs,
                 "retries": sum(c["attempt"] - 1 for c in chunks)},
    }


def _over(failed: int, total: int, percent: float) -> bool:
    return total > 0 and failed * 100.0 > percent * total


def threshold_breach(chunks: list[dict[str, Any]], threshold: Threshold) -> str | None:
    """Why the run is already over its error threshold (failures counted so far are final), or None."""
    p = progress(chunks)
    items, jobs = p["items"], p["jobs"]
    if _over(items["failed"], items["total"], threshold.failed_items_percent):
        return (f"{items['failed']} of {items['total']} items failed, more than the threshold of "
                f"{threshold.failed_items_percent:g}%.")
    if _over(jobs["failed"], jobs["total"], threshold.failed_jobs_percent):
        return (f"{jobs['failed']} of {jobs['total']} jobs ended with failed items, more than the threshold of "
                f"{threshold.failed_jobs_percent:g}%.")
    return None


@dataclass(frozen=True)
class ScoringVerdict:
    """What the run does next once chunks are settled: keep going, fail, or finish scoring."""
    kind: str  # "continue" | "fail" | "scored"
    reason: str = ""


def scoring_verdict(chunks: list[dict[str, Any]], threshold: Threshold) -> ScoringVerdict:
    breach = threshold_breach(chunks, threshold)
    if breach:
        return ScoringVerdict("fail", breach)
    if all(c["done"] for c in chunks):
        p = progress(chunks)["items"]
        return ScoringVerdict("scored", f"{p['succeeded']} of {p['total']} items scored"
                                        + (f", {p['failed']} failed within the threshold." if p["failed"] else "."))
    return ScoringVerdict("continue")


def summary(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-item status and output blob names, in input order (the run's summary blob)."""
    rows: list[dict[str, Any]] = []
    for c in chunks:
        for item in c["items"]:
            if item in c["succeeded"]:
                rows.append({"name": item, "status": "succeeded", "outputs": c["succeeded"][item],
                             "chunk": c["index"]})
            elif item in c["failed"]:
                rows.append({"name": item, "status": "failed", "error": c["failed"][item], "chunk": c["index"]})
            else:
                rows.append({"name": item, "status": "pending", "chunk": c["index"]})
    return rows
