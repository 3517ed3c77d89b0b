"""The state machines of jobs and nodes: one table of valid transitions each.

Every change of a job's or a node's state goes through `transition()`, which refuses an illegal
move and returns the history entry to keep. Internal phases map onto the contract's enums.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain.errors import ApiError


class JobPhase(StrEnum):
    QUEUED = "queued"  # waiting for nodes (also: awaiting retry, or its dependencies)
    ASSIGNED = "assigned"  # a scheduling pass gave it nodes; assignments are on their way
    RUNNING = "running"  # at least one task started (job preparation included)
    TERMINATING = "terminating"  # stop requested (user, wall clock, deallocation); tasks stopping
    SUCCEEDED = "succeeded"
    FAILED = "failed"


JOB_TRANSITIONS: dict[JobPhase, dict[JobPhase, str]] = {
    JobPhase.QUEUED: {
        JobPhase.ASSIGNED: "a scheduling pass committed nodes for it",
        JobPhase.RUNNING: "an array job: its first child job left the queue",
        JobPhase.TERMINATING: "terminate or delete asked while queued",
        JobPhase.FAILED: "permanent error before it ran (cluster gone, retries exhausted)",
    },
    JobPhase.ASSIGNED: {
        JobPhase.RUNNING: "a node reported the first task started",
        JobPhase.QUEUED: "its node was lost or preempted before it started: requeue",
        JobPhase.TERMINATING: "terminate, delete, wall clock or deallocation",
        JobPhase.FAILED: "a task could not start or exited non-zero at once",
        JobPhase.SUCCEEDED: "every task exited 0 before the start report was processed",
    },
    JobPhase.RUNNING: {
        JobPhase.SUCCEEDED: "every required task exited 0",
        JobPhase.FAILED: "a required task exited non-zero or could not run",
        JobPhase.TERMINATING: "terminate, delete, wall clock, deallocation or a failed task",
        JobPhase.QUEUED: "its node was lost or preempted: requeue",
    },
    JobPhase.TERMINATING: {
        JobPhase.FAILED: "tasks stopped after terminate, wall clock or a failure",
        JobPhase.SUCCEEDED: "every task had already exited 0 before the stop reached it",
        JobPhase.QUEUED: "tasks stopped for a requeue (preemption, node removal with requeue)",
    },
    JobPhase.SUCCEEDED: {},
    JobPhase.FAILED: {},
}

JOB_TERMINAL = frozenset({JobPhase.SUCCEEDED, JobPhase.FAILED})

#: The contract's executionState for each internal phase.
JOB_EXECUTION_STATE: dict[JobPhase, str] = {
    JobPhase.QUEUED: "queued",
    JobPhase.ASSIGNED: "running",
    JobPhase.RUNNING: "running",
    JobPhase.TERMINATING: "terminating",
    JobPhase.SUCCEEDED: "succeeded",
    JobPhase.FAILED: "failed",
}


class NodeState(StrEnum):
    STARTING = "starting"  # provider asked for it; agent not registered yet
    PREPARING = "preparing"  # agent registered; mounts and setup task running
    IDLE = "idle"
    RUNNING = "running"
    LEAVING = "leaving"  # being removed (scale-down, waitforjobcompletion, preemption)
    UNUSABLE = "unusable"  # setup task failed or the node is broken
    LOST = "lost"  # heartbeat stopped; its jobs are requeued, the node is removed


NODE_TRANSITIONS: dict[NodeState, dict[NodeState, str]] = {
    NodeState.STARTING: {
        NodeState.PREPARING: "agent registered",
        NodeState.IDLE: "agent registered with nothing to prepare",
        NodeState.UNUSABLE: "the agent failed to start",
        NodeState.LEAVING: "removed before it joined",
        NodeState.LOST: "never registered before the start timeout",
    },
    NodeState.PREPARING: {
        NodeState.IDLE: "mounts and setup task succeeded",
        NodeState.UNUSABLE: "mount or setup task failed",
        NodeState.LEAVING: "removed while preparing",
        NodeState.LOST: "heartbeat stopped",
    },
    NodeState.IDLE: {
        NodeState.RUNNING: "a job was assigned",
        NodeState.LEAVING: "scale-down or removal",
        NodeState.UNUSABLE: "the agent reported a fault",
        NodeState.LOST: "heartbeat stopped",
    },
    NodeState.RUNNING: {
        NodeState.IDLE: "its job ended",
        NodeState.LEAVING: "removal or preemption while busy",
        NodeState.UNUSABLE: "the agent reported a fault",
        NodeState.LOST: "heartbeat stopped",
    },
    NodeState.LEAVING: {
        NodeState.LOST: "gone before removal finished",
    },
    NodeState.UNUSABLE: {
        NodeState.LEAVING: "removed",
        NodeState.LOST: "heartbeat stopped",
    },
    NodeState.LOST: {},
}

#: The contract's nodeStateCounts bucket for each node state.
NODE_COUNT_BUCKET: dict[NodeState, str] = {
    NodeState.STARTING: "preparingNodeCount",
    NodeState.PREPARING: "preparingNodeCount",
    NodeState.IDLE: "idleNodeCount",
    NodeState.RUNNING: "runningNodeCount",
    NodeState.LEAVING: "leavingNodeCount",
    NodeState.UNUSABLE: "unusableNodeCount",
    NodeState.LOST: "unusableNodeCount",
}


def job_transition(current: str, target: str, reason: str, at: datetime) -> dict[str, Any]:
    """Check a job phase move and return the history entry to append."""
    return _transition(JOB_TRANSITIONS, JobPhase(current), JobPhase(target), reason, at, "job")


def node_transition(current: str, target: str, reason: str, at: datetime) -> dict[str, Any]:
    """Check a node state move and return the history entry to append."""
    return _transition(NODE_TRANSITIONS, NodeState(current), NodeState(target), reason, at, "node")


class IllegalTransition(ApiError):
    pass


def _transition(table: dict, current: Any, target: Any, reason: str, at: datetime, kind: str) -> dict[str, Any]:
    if target not in table[current]:
        raise IllegalTransition(409, "InvalidStateTransition",
                                f"A {kind} cannot move from '{current}' to '{target}'.")
    return {"from": str(current), "to": str(target), "at": at.isoformat(), "reason": reason}
