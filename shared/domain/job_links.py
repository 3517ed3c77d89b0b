"""The job body's additions beyond 2018-05-01 that link jobs: `properties.array` (a job array) and
`properties.dependsOn` (jobs that must end first). Pure: shape rules and the naming of dependencies.

- ``array``: ``{"count": N, "maxConcurrent": K}``, 1 <= N <= 1000, 1 <= K <= N (K defaults to N).
- ``dependsOn``: at most 20 ``{"job": <name in the same experiment, or a job's resource id in the
  same workspace>, "condition": "succeeded" | "ended"}`` (condition defaults to succeeded).

Every refusal is a 400 whose `target` is the field path. The official SDK neither sends nor reads
these; the service stores them in the job's properties and echoes them.
"""

from __future__ import annotations

import re
from typing import Any

from shared.domain.errors import bad_request, invalid
from shared.domain.keys import JobRef

MAX_COUNT = 1000  # tasks of one array
MAX_DEPENDENCIES = 20
CONDITIONS = ("succeeded", "ended")  # the first is the default
WAITING_REASON = "WaitingForDependencies"
DEPENDENCY_FAILED = "DependencyFailed"
NAME_RE = re.compile(r"[-A-Za-z0-9_]{1,64}")
JOB_ID_RE = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.BatchAI"
    r"/workspaces/(?P<ws>[^/]+)/experiments/(?P<exp>[-A-Za-z0-9_]{1,64})/jobs/(?P<name>[-A-Za-z0-9_]{1,64})/?",
    re.IGNORECASE)



def _int(value: Any, path: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(path, f"expected integer, got {type(value).__name__}.")
    if not low <= value <= high:
        raise invalid(path, f"must be from {low} to {high}, got {value}.")
    return value


def _object(value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(path, f"expected object, got {type(value).__name__}.")
    for key in value:
        if key not in allowed:
            raise invalid(f"{path}.{key}", f"unknown property; allowed: {', '.join(allowed)}.")
    return value


def _array(raw: Any) -> dict[str, int]:
    array = _object(raw, "properties.array", ("count", "maxConcurrent"))
    if array.get("count") is None:
        raise bad_request("The field 'properties.array.count' is required.", "properties.array.count",
                          code="MissingRequiredProperty")
    count = _int(array["count"], "properties.array.count", 1, MAX_COUNT)
    limit = array.get("maxConcurrent")
    limit = count if limit is None else _int(limit, "properties.array.maxConcurrent", 1, count)
    return {"count": count, "maxConcurrent": limit}


def _depends_on(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list):
        raise invalid("properties.dependsOn", f"expected array, got {type(raw).__name__}.")
    if len(raw) > MAX_DEPENDENCIES:
        raise invalid("properties.dependsOn", f"at most {MAX_DEPENDENCIES} dependencies, got {len(raw)}.")
    out = []
    for i, entry in enumerate(raw):
        path = f"properties.dependsOn[{i}]"
        dep = _object(entry, path, ("job", "condition"))
        job = dep.get("job")
        if not isinstance(job, str) or not (NAME_RE.fullmatch(job) or JOB_ID_RE.fullmatch(job)):
            raise invalid(f"{path}.job", "must be a job name in the same experiment, or a job's resource id.")
        condition = CONDITIONS[0] if dep.get("condition") is None else dep["condition"]
        if condition not in CONDITIONS:
            raise invalid(f"{path}.condition", f"'{str(condition)[:100]}' is not one of: {', '.join(CONDITIONS)}.")
        out.append({"job": job, "condition": condition})
    return out


def validate(body: Any) -> dict[str, Any]:
    """The normalized additions of a job create body (only those it gives)."""
    raw = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    if raw.get("array") is not None:
        out["array"] = _array(raw["array"])
    if raw.get("dependsOn") is not None:
        out["dependsOn"] = _depends_on(raw["dependsOn"])
    return out


def dependency_ref(job: JobRef, value: str, index: int) -> JobRef:
    """The job a dependsOn entry names: a name in `job`'s experiment, or a resource id in its workspace."""
    m = JOB_ID_RE.fullmatch(value)
    if m is None:
        ref = job.experiment.job(value)
    else:
        ws = job.experiment.workspace
        if (m["sub"].lower(), m["rg"].lower(), m["ws"].lower()) != (
                ws.subscription.lower(), ws.resource_group.lower(), ws.workspace.lower()):
            raise invalid(f"properties.dependsOn[{index}].job",
                           f"a dependency must be a job of the workspace '{ws.workspace}'.")
        ref = ws.experiment(m["exp"]).job(m["name"])
    if ref.key == job.key:
        raise invalid(f"properties.dependsOn[{index}].job", "a job cannot depend on itself.")
    return ref
