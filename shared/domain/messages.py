"""The messages between the service and node agents. Both sides import these shapes from here.

Service -> node queue ``node-<node id>`` (every one signed by the service, see
`shared.adapters.message_signing`; an agent acts only on messages signed for it). Messages name
what to read, never carry documents (a queue message holds 64 KiB; documents carry secrets):
- ``setup``: join the cluster (`Setup`: its key and the version of what the node needs), sent in
  answer to ``node-registered``; the agent fetches the `NodeSetup` (mount volumes, setup task) from
  ``POST /nodeagent/setup``, mounts, runs the setup task, reports ready/unusable.
- ``assign``: run one task of a job (`Assignment`: ids only); the agent fetches the `AssignedTask`
  from ``POST /nodeagent/assignment``, which answers only while the node holds that assignment.
- ``stop``: stop the task of an assignment (terminate, wall clock, requeue, preemption).
- ``leave``: finish and exit the agent (node removed).
- ``exec``: run a command someone allowed to log in to the cluster asked for (`ExecCommand`: its id);
  the agent fetches it from ``POST /nodeagent/exec`` and answers with ``POST /nodeagent/exec-result``.

Node agent -> queue ``node-events`` (see `NodeEvent.kind`):
- ``node-registered`` (inventory), ``node-ready`` (mounts and setup task done),
  ``node-unusable`` (error), ``node-preempted`` (Scheduled Events Preempt notice),
- ``task-started`` (once the task has run a second: `shared.agent.start_report`), ``task-exited``
  (exitCode, error, stopReason, and startedAt for a task that ended before its task-started was due).

Every message carries ids that make it idempotent and fenceable: an event whose assignmentId is
not the job's current assignment is stale and ignored, and so is an ``assign`` whose assignment
the node no longer holds when it asks for the task.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Fields a signed message carries beside its own (see shared.adapters.message_signing).
ENVELOPE_FIELDS = frozenset({"node", "kid", "sig"})


@dataclass
class NodeAddress:
    node_id: str
    address: str  # the IP other nodes of the gang reach it at


@dataclass
class Assignment:
    """The ``assign`` message: which task of which assignment (attempt: the fencing token)."""
    assignment_id: str
    job_key: str
    attempt: int
    task_index: int
    kind: str = "assign"
    traceparent: str = ""  # the job's trace (W3C), continued by the node's spans

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class AssignedTask:
    """What a node runs for an `Assignment`: served by the node payload API, secrets opened."""
    assignment_id: str
    job_key: str
    job_arm_id: str
    attempt: int
    task_index: int
    nodes: list[NodeAddress]  # the gang, in rank order; nodes[0] is the master
    job: dict[str, Any]  # the job's `properties` (JobProperties JSON, secrets opened)
    cluster: dict[str, Any]  # what the node needs of its cluster (`node_view`)
    output_container: str  # blob container for stdouterr and outputs
    output_prefix: str  # "{ws}/{exp}/{job}/{jobOutputDirectoryPathSegment}"
    gpus: list[int] | None = None  # the node's GPU indices this task gets (None: not recorded, every GPU)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AssignedTask:
        d = dict(d)
        d["nodes"] = [NodeAddress(**n) for n in d["nodes"]]
        return cls(**d)


@dataclass
class StopTask:
    assignment_id: str
    reason: str  # "terminated" | "walltime" | "requeue" | "preempted" | "deleted" | "failed-peer"
    grace_seconds: float = 10.0
    kind: str = "stop"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class Setup:
    """The ``setup`` message: join cluster `cluster_key` as its `NodeSetup` of `version` says."""
    cluster_key: str
    version: str
    kind: str = "setup"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class NodeSetup:
    """What a node needs to join its cluster: served by the node payload API, secrets opened."""
    version: str  # `setup_version` of the cluster's node view: a repeat with the same version is not re-run
    cluster: dict[str, Any]  # `node_view` of the cluster's properties

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeSetup:
        return cls(version=str(d["version"]), cluster=dict(d["cluster"]))


@dataclass
class Leave:
    reason: str
    kind: str = "leave"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class ExecCommand:
    """The ``exec`` message: run node exec request `exec_id` (its command is fetched by reference)."""
    exec_id: str
    kind: str = "exec"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class NodeEvent:
    kind: str
    cluster_key: str
    node_id: str
    at: str  # ISO 8601 UTC
    assignment_id: str | None = None
    job_key: str | None = None
    task_index: int | None = None
    exit_code: int | None = None
    stop_reason: str | None = None
    error: dict[str, str] | None = None  # {"code", "message"}
    inventory: dict[str, Any] = field(default_factory=dict)  # cores, memoryMb, gpus, address
    traceparent: str | None = None  # the trace of the task it reports (W3C)
    started_at: str | None = None  # task-exited of a task that ended before its task-started was sent

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, {})})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeEvent:
        return cls(**d)


NodeMessage = Assignment | StopTask | Setup | Leave | ExecCommand


def node_message(d: dict[str, Any]) -> NodeMessage:
    """The message a (verified) document holds; its envelope fields are ignored."""
    d = {k: v for k, v in d.items() if k not in ENVELOPE_FIELDS}
    kind = d.get("kind")
    if kind == "assign":
        return Assignment(**d)
    if kind == "stop":
        return StopTask(**d)
    if kind == "setup":
        return Setup(**d)
    if kind == "leave":
        return Leave(**d)
    if kind == "exec":
        return ExecCommand(**d)
    raise ValueError(f"unknown node message kind {kind!r}")


def parse_node_message(text: str) -> NodeMessage:
    """The message in a queue message's text, without checking its signature (the service's own
    tests and tools; an agent verifies first, see shared.adapters.message_signing)."""
    d = json.loads(text)
    if not isinstance(d, dict):
        raise ValueError("a node message is a JSON object")
    return node_message(d)


def node_view(cluster_properties: dict[str, Any]) -> dict[str, Any]:
    """What a node needs of its cluster's properties: the mount volumes, the setup task and where its
    performance counters go (nothing else: not the admin account)."""
    node_setup = cluster_properties.get("nodeSetup") or {}
    view = {k: node_setup[k] for k in ("mountVolumes", "setupTask", "performanceCountersSettings")
            if node_setup.get(k)}
    if not view.get("mountVolumes") and cluster_properties.get("mountVolumes"):
        view["mountVolumes"] = cluster_properties["mountVolumes"]
    return {"nodeSetup": view}


def setup_version(view: dict[str, Any]) -> str:
    """The version of a node view: it changes exactly when what a node sets up changes."""
    return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:16]
