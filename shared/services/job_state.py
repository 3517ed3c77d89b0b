"""Job execution state: the phase fields of a job's `internal` are written only here after creation.

`transition()` reads the job document, refuses a move the job state machine does not allow,
appends the history entry, moves `executionStateTransitionTime` when the contract's state changes,
applies the caller's mutation of `internal`, and writes with the read's ETag; on a conflict it
re-reads and checks again. Fences (`expect_assignment`, `allowed_from`, `guard`) make every
caller idempotent: a move whose premise no longer holds is a no-op that returns None. A move to
an end then moves what waits on the job (`job_links.job_ended`: its array parent, its dependents).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from shared.adapters import storage
from shared.adapters.resource_store import Doc, ResourceStore, StaleEtag
from shared.config import Settings
from shared.domain import states
from shared.domain.keys import JobRef

MAX_CONFLICTS = 20
HISTORY_LIMIT = 50

Internal = dict[str, Any]
Target = str | Callable[[Internal], str]


def jobs(settings: Settings) -> ResourceStore:
    return ResourceStore(settings.storage_connection_string, storage.T_JOBS)


def get(settings: Settings, job_ref: JobRef) -> Doc | None:
    return jobs(settings).get(job_ref.experiment.job_pk, job_ref.name.lower())


def phase(doc: Doc) -> str:
    return doc.data.get("internal", {}).get("phase", states.JobPhase.QUEUED)


def transition(settings: Settings, job_ref: JobRef, target: Target, reason: str, now: datetime,
               mutate: Callable[[Internal], None] | None = None, expect_assignment: str | None = None,
               allowed_from: Collection[str] | None = None,
               guard: Callable[[Internal], bool] | None = None, read: Doc | None = None) -> Doc | None:
    """Move a job to `target` (a phase, or a function of the current `internal` giving one).

    Returns the written document, or None when the job vanished, its `internal.assignmentId` is
    not `expect_assignment`, its phase is not in `allowed_from`, or `guard(internal)` is false.
    Raises `states.IllegalTransition` for a move the state machine refuses. `read`: the document
    as the caller just read it, tried first (its ETag guards the write; a conflict re-reads).
    """
    store = jobs(settings)
    for _ in range(MAX_CONFLICTS):
        doc, read = (read, None) if read is not None else (store.get(job_ref.experiment.job_pk,
                                                                     job_ref.name.lower()), None)
        if doc is None:
            return None
        data = copy.deepcopy(doc.data)
        internal: Internal = data.setdefault("internal", {})
        current = internal.get("phase", states.JobPhase.QUEUED)
        if expect_assignment is not None and internal.get("assignmentId") != expect_assignment:
            return None
        if allowed_from is not None and current not in allowed_from:
            return None
        if guard is not None and not guard(internal):
            return None
        goal = target(internal) if callable(target) else target
        entry = states.job_transition(current, goal, reason, now)
        internal["phase"] = str(goal)
        internal["history"] = (internal.get("history") or [])[-(HISTORY_LIMIT - 1):] + [entry]
        before = states.JOB_EXECUTION_STATE[states.JobPhase(current)]
        if states.JOB_EXECUTION_STATE[states.JobPhase(goal)] != before or not internal.get(
                "executionStateTransitionTime"):
            internal["executionStateTransitionTime"] = now.isoformat()
        if mutate is not None:
            mutate(internal)
        try:
            written = store.replace(doc, data)
        except StaleEtag:
            continue
        if states.JobPhase(goal) in states.JOB_TERMINAL:
            _ended(settings, job_ref, written, now)
        return written
    raise StaleEtag(f"job {job_ref.key} kept changing")


def _ended(settings: Settings, job_ref: JobRef, doc: Doc, now: datetime) -> None:
    """A job's end moves what waits on it: its array parent and its dependents (`job_links`)."""
    from shared.services import job_links, scoring

    job_links.job_ended(settings, job_ref, doc, now)
    run = (doc.data.get("internal") or {}).get("scoringRun")
    if run:
        scoring.kick(settings, run, job_ref.name)


def mutate(settings: Settings, job_ref: JobRef, change: Callable[[Internal], bool]) -> Doc | None:
    """Change `internal` without a phase move (e.g. record a start time once). `change` returns
    False when there is nothing to write. Returns the document as stored, None when it vanished."""
    store = jobs(settings)
    for _ in range(MAX_CONFLICTS):
        doc = store.get(job_ref.experiment.job_pk, job_ref.name.lower())
        if doc is None:
            return None
        data = copy.deepcopy(doc.data)
        if not change(data.setdefault("internal", {})):
            return doc
        try:
            return store.replace(doc, data)
        except StaleEtag:
            continue
    raise StaleEtag(f"job {job_ref.key} kept changing")


def set_end(internal: Internal, now: datetime, exit_code: int | None,
            errors: list[dict[str, Any]] | None = None) -> None:
    """Record the end of a job: endTime and exitCode are written once; errors are appended."""
    info = internal.setdefault("executionInfo", {})
    info.setdefault("endTime", now.isoformat())
    if info.get("exitCode") is None and exit_code is not None:
        info["exitCode"] = exit_code
    if errors:
        info["errors"] = (info.get("errors") or []) + errors


def error(code: str, message: str, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or []}
