"""Resource documents: how each resource is stored at creation and rendered as the contract's JSON.

A document is the ARM JSON (``id``, ``name``, ``type``, [``location``, ``tags``], ``properties``)
plus ``internal`` (fields only services read). Rendering drops ``internal``, removes every secret
(passwords, storage keys, secret values, Key Vault references: stored, never returned, as Batch AI
did) and computes the read-only fields. Pure: times, ids and node rows are passed in.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.domain import states
from shared.domain.contract import swagger
from shared.domain.keys import ClusterRef, ExperimentRef, JobRef, WorkspaceRef

# ARM resource types as the real service sent them (the swagger examples' "Microsoft.BatchAI/Workspaces",
# ".../Clusters" etc. were written by hand); documents stored with the old spelling render with these.
T_WORKSPACE = "Microsoft.BatchAI/workspaces"
T_EXPERIMENT = "Microsoft.BatchAI/workspaces/experiments"
T_CLUSTER = "Microsoft.BatchAI/workspaces/clusters"
T_FILESERVER = "Microsoft.BatchAI/workspaces/fileServers"
T_JOB = "Microsoft.BatchAI/workspaces/experiments/jobs"

# Fields whose string value is a secret: sealed at rest (`shared.adapters.secret_box`), never returned.
SECRET_VALUE_KEYS = frozenset({"password", "adminUserPassword", "accountKey", "instrumentationKey"})
# Never returned either: Key Vault references (where a secret lives).
SECRET_KEYS = SECRET_VALUE_KEYS | frozenset({
    "passwordSecretReference", "accountKeySecretReference", "instrumentationKeySecretReference",
    "valueSecretReference",
})
# Returned as REDACTED (the contract requires the field): unmanaged mount commands carry whatever
# credentials the mount needs, as Batch AI's users wrote them, so they are sealed at rest too.
MASKED_KEYS = frozenset({"mountCommand"})
SEALED_KEYS = SECRET_VALUE_KEYS | MASKED_KEYS
REDACTED = "<redacted>"

CLUSTER_ID_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.BatchAI"
    r"/workspaces?/(?P<ws>[^/]+)/clusters/(?P<name>[^/]+)/?$", re.IGNORECASE)

NODE_BUCKETS = ("idleNodeCount", "runningNodeCount", "preparingNodeCount", "unusableNodeCount", "leavingNodeCount")


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _system(now: datetime) -> dict[str, str]:
    t = iso(now)
    return {"creationTime": t, "provisioningState": "succeeded", "provisioningStateTransitionTime": t}


def new_workspace(ref: WorkspaceRef, location: str, tags: dict[str, str], now: datetime) -> dict[str, Any]:
    return {"id": ref.arm_id, "name": ref.workspace, "type": T_WORKSPACE, "location": location, "tags": tags,
            "properties": _system(now), "internal": {}}


def new_experiment(ref: ExperimentRef, now: datetime) -> dict[str, Any]:
    return {"id": ref.arm_id, "name": ref.name, "type": T_EXPERIMENT, "properties": _system(now), "internal": {}}


def new_cluster(ref: ClusterRef, props: dict[str, Any], now: datetime, unique: str) -> dict[str, Any]:
    props = copy.deepcopy(props)
    task = (props.get("nodeSetup") or {}).get("setupTask")
    if task is not None:
        ws = ref.workspace
        task["stdOutErrPathSuffix"] = (f"{ws.subscription}/{ws.resource_group}/workspaces/{ws.workspace}"
                                       f"/clusters/{ref.name}/{unique}")
    return {"id": ref.arm_id, "name": ref.name, "type": T_CLUSTER, "properties": {**props, **_system(now)},
            "internal": {"allocationState": "steady", "allocationStateTransitionTime": iso(now),
                         **({"packing": props["packing"]} if props.get("packing") else {})}}


def new_fileserver(ws: WorkspaceRef, name: str, props: dict[str, Any], now: datetime,
                   mount: dict[str, str]) -> dict[str, Any]:
    return {"id": f"{ws.arm_id}/fileServers/{name}", "name": name, "type": T_FILESERVER,
            "properties": {**copy.deepcopy(props), "mountSettings": mount, **_system(now)}, "internal": {}}


def new_job(ref: JobRef, props: dict[str, Any], cluster: ClusterRef, tool: str, segment: str,
            now: datetime) -> dict[str, Any]:
    props = copy.deepcopy(props)
    props["cluster"] = {"id": cluster.arm_id}
    props["toolType"] = tool
    props["jobOutputDirectoryPathSegment"] = segment
    internal = {"phase": states.JobPhase.QUEUED.value, "history": [], "attempt": 1, "retries": 0,
                "clusterKey": cluster.key, "submittedAt": now.isoformat(), "assignmentId": None,
                "executionInfo": {}, "executionStateTransitionTime": now.isoformat()}
    return {"id": ref.arm_id, "name": ref.name, "type": T_JOB, "properties": {**props, **_system(now)},
            "internal": internal}


def parse_cluster_id(arm_id: str) -> tuple[str, str, str, str] | None:
    m = CLUSTER_ID_RE.match(arm_id.strip())
    return (m["sub"], m["rg"], m["ws"], m["name"]) if m else None


def map_secrets(value: Any, fn: Callable[[str], str], in_secrets: bool = False) -> Any:
    """A copy with `fn` applied to every value sealed at rest: a string under SEALED_KEYS anywhere, and
    the ``value`` of each ``secrets`` entry."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, str) and (k in SEALED_KEYS or (in_secrets and k == "value")):
                out[k] = fn(v)
            else:
                out[k] = map_secrets(v, fn, in_secrets=(k == "secrets"))
        return out
    if isinstance(value, list):
        return [map_secrets(v, fn, in_secrets) for v in value]
    return value


def secret_values(value: Any) -> list[str]:
    """Every secret value in `value` (see `map_secrets`)."""
    found: list[str] = []

    def collect(text: str) -> str:
        found.append(text)
        return text
    map_secrets(value, collect)
    return found


def redact(value: Any, in_secrets: bool = False) -> Any:
    """A copy without secrets: SECRET_KEYS anywhere, ``value`` of each ``secrets`` entry, and
    MASKED_KEYS replaced with REDACTED."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in MASKED_KEYS:
                out[k] = REDACTED
                continue
            if k in SECRET_KEYS or (in_secrets and k == "value"):
                continue
            out[k] = redact(v, in_secrets=(k == "secrets"))
        return out
    if isinstance(value, list):
        return [redact(v, in_secrets) for v in value]
    return value


def _base(doc: dict[str, Any], resource_type: str) -> dict[str, Any]:
    out = redact({k: v for k, v in doc.items() if k != "internal"})
    out["type"] = resource_type
    if (doc.get("internal") or {}).get("deletingSince"):
        out["properties"]["provisioningState"] = "deleting"
        out["properties"]["provisioningStateTransitionTime"] = doc["internal"]["deletingSince"]
    return out


def render_workspace(doc: dict[str, Any]) -> dict[str, Any]:
    return _base(doc, T_WORKSPACE)


def render_experiment(doc: dict[str, Any]) -> dict[str, Any]:
    return _base(doc, T_EXPERIMENT)


def render_fileserver(doc: dict[str, Any]) -> dict[str, Any]:
    return _base(doc, T_FILESERVER)


def _as_error(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {"code": "NodeError", "message": raw}
    if not isinstance(raw, dict):
        return None
    error: dict[str, Any] = {"code": str(raw.get("code", "NodeError")), "message": str(raw.get("message", ""))}
    details = raw.get("details")
    if isinstance(details, dict):
        details = [{"name": k, "value": str(v)} for k, v in details.items()]
    if details:
        error["details"] = details
    return error


def node_rows_only(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if str(r.get("RowKey", "")).startswith("node|")]


def render_cluster(doc: dict[str, Any], node_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Cluster JSON; allocation from ``internal`` (the reconciler's), node counts from ``node|`` rows."""
    out = _base(doc, T_CLUSTER)
    props = out["properties"]
    internal = doc.get("internal") or {}
    props["allocationState"] = internal.get("allocationState") or "steady"
    props["allocationStateTransitionTime"] = internal.get("allocationStateTransitionTime") or props["creationTime"]
    counts = dict.fromkeys(NODE_BUCKETS, 0)
    current = 0
    errors: list[dict[str, Any]] = []
    for row in node_rows_only(node_rows):
        try:
            state = states.NodeState(row.get("state"))
        except ValueError:
            continue
        counts[states.NODE_COUNT_BUCKET[state]] += 1
        if state != states.NodeState.LOST:
            current += 1
        if state == states.NodeState.UNUSABLE and row.get("error"):
            error = _as_error(row["error"])
            if error:
                errors.append(error)
    errors += [e for e in (_as_error(x) for x in internal.get("errors") or []) if e]
    props["currentNodeCount"] = current
    props["nodeStateCounts"] = counts
    if errors:
        props["errors"] = errors
    return out


def render_job(doc: dict[str, Any]) -> dict[str, Any]:
    """Job JSON; executionState and executionInfo from ``internal`` (the scheduler's fields)."""
    out = _base(doc, T_JOB)
    props = out["properties"]
    internal = doc.get("internal") or {}
    phase = states.JobPhase(internal.get("phase") or states.JobPhase.QUEUED)
    props["executionState"] = states.JOB_EXECUTION_STATE[phase]
    props["executionStateTransitionTime"] = _iso_text(internal.get("executionStateTransitionTime")) \
        or props["creationTime"]
    info = {k: v for k, v in (internal.get("executionInfo") or {}).items()
            if k in ("startTime", "endTime", "exitCode", "errors") and v is not None}
    for key in ("startTime", "endTime"):
        if key in info:
            info[key] = _iso_text(info[key])
    if info.get("errors"):
        info["errors"] = [e for e in (_as_error(x) for x in info["errors"]) if e]
    if info:
        props["executionInfo"] = info
    if phase == states.JobPhase.QUEUED and internal.get("waitingReason"):
        props["waitingReason"] = internal["waitingReason"]
    if internal.get("sweep"):  # a sweep's child job (beyond 2018-05-01)
        props["sweep"] = internal["sweep"]
    return out


def _iso_text(value: Any) -> str | None:
    if not value:
        return None
    text = str(value)
    try:
        return iso(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text


def _read_only(definition: str) -> set[str]:
    props = swagger()["definitions"][definition]["properties"]
    return {k for k, v in props.items() if v.get("readOnly")}


CREATE_ONLY_IGNORED = {
    "cluster": _read_only("ClusterProperties"),
    "fileserver": _read_only("FileServerProperties") | {"mountSettings"},
    "job": _read_only("JobProperties") | {"toolType"},
}


def same_spec(kind: str, stored: dict[str, Any], requested: dict[str, Any]) -> bool:
    """Whether a create request asks for what is stored (read-only and derived fields aside)."""
    ignored = CREATE_ONLY_IGNORED[kind]
    a = {k: v for k, v in copy.deepcopy(stored).items() if k not in ignored}
    b = {k: v for k, v in copy.deepcopy(requested).items() if k not in ignored}
    for side in (a, b):
        task = (side.get("nodeSetup") or {}).get("setupTask")
        if task:
            task.pop("stdOutErrPathSuffix", None)
        if kind == "cluster":  # clusters stored before nodeSource existed are the provider's
            side.setdefault("nodeSource", "provider")
        if kind == "job" and "cluster" in side:
            side["cluster"] = {"id": str(side["cluster"].get("id", "")).lower()}
        if kind == "cluster" and side.get("packing") == "whole-node":
            del side["packing"]  # the default, said or not
    return a == b
