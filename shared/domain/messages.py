"""The messages between the service and node agents. Both sides import these shapes from here.

Service -> node queue ``node-<node id>``:
- ``setup``: the cluster's properties the node needs to join (mountVolumes, nodeSetup), sent in
  answer to ``node-registered``; the agent mounts, runs the setup task, reports ready/unusable.
- ``assign``: run one task of a job (see `Assignment`).
- ``stop``: stop the task of an assignment (terminate, wall clock, requeue, preemption).
- ``leave``: finish and exit the agent (node removed).

Node agent -> queue ``node-events`` (see `NodeEvent.kind`):
- ``node-registered`` (inventory), ``node-ready`` (mounts and setup task done),
  ``node-unusable`` (error), ``node-preempted`` (Scheduled Events Preempt notice),
- ``task-started``, ``task-exited`` (exitCode, error, stopReason).

Every message carries ids that make it idempotent and fenceable: an event whose assignmentId is
not the job's current assignment is stale and ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class NodeAddress:
    node_id: str
    address: str  # the IP other nodes of the gang reach it at


@dataclass
class Assignment:
    assignment_id: str
    job_key: str
    job_arm_id: str
    attempt: int
    task_index: int
    nodes: list[NodeAddress]  # the gang, in rank order; nodes[0] is the master
    job: dict[str, Any]  # the job's stored `properties` (JobProperties JSON, secrets included)
    cluster: dict[str, Any]  # the cluster's properties the node needs (mountVolumes, vmSize, ...)
    output_container: str  # blob container for stdouterr and outputs
    output_prefix: str  # "{ws}/{exp}/{job}/{jobOutputDirectoryPathSegment}"
    kind: str = "assign"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Assignment:
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
    cluster: dict[str, Any]  # the cluster's stored properties (mountVolumes, nodeSetup, vmSize, ...)
    kind: str = "setup"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class Leave:
    reason: str
    kind: str = "leave"

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

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, {})})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeEvent:
        return cls(**d)


def parse_node_message(text: str) -> Assignment | StopTask | Setup | Leave:
    d = json.loads(text)
    kind = d.get("kind")
    if kind == "assign":
        return Assignment.from_dict(d)
    if kind == "stop":
        return StopTask(**d)
    if kind == "setup":
        return Setup(**d)
    if kind == "leave":
        return Leave(**d)
    raise ValueError(f"unknown node message kind {kind!r}")
