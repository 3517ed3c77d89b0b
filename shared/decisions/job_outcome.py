"""What the tasks' exits of one assignment mean for the job. Pure: task results in, outcome out.

Rules, first match wins, for the task that just exited:
1. It was stopped for a requeue: `preempted` and `requeue` (a deliberate drain) requeue without
   counting a retry; `node-removed` requeues and counts one.
2. It was stopped by terminate, delete or the wall clock, or the job is terminating for one of
   those and this exit does not complete it: failed with that stop's error code.
3. It exited non-zero or reported an error (and was not stopped by us): failed with its exit code
   and error (code "JobFailed" unless the agent gave one); the rest of the gang is stopped.
4. Every required task has exited 0: succeeded, exit code 0.
5. Otherwise wait for the other tasks. Exits of tasks we stopped after the job ended
   (`job-finished`, `failed-peer`) decide nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Stop reasons that requeue the job, and whether the requeue counts as a retry.
REQUEUE_STOPS: dict[str, bool] = {"preempted": False, "requeue": False, "node-removed": True}
CLUSTER_DELETED = "cluster-deleted"
EARLY_TERMINATED = "early-terminated"  # a sweep's early-termination policy stopped it
#: Stop reasons that fail the job, with the error code recorded.
FAILING_STOPS: dict[str, str] = {"terminated": "JobTerminated", "deleted": "JobDeleted",
                                 "walltime": "JobWallClockTimeExceeded", CLUSTER_DELETED: "ClusterDeleted",
                                 EARLY_TERMINATED: "EarlyTerminated"}
FAILING_MESSAGES: dict[str, str] = {"terminated": "The job was terminated.",
                                    "deleted": "The job was deleted while it ran.",
                                    "walltime": "The job ran longer than its maxWallClockTime.",
                                    CLUSTER_DELETED: "The job's cluster was deleted.",
                                    EARLY_TERMINATED: "The sweep's early-termination policy stopped the job."}
#: Stops the service sends after it has decided; their exits are noise.
AFTERMATH_STOPS = frozenset({"job-finished", "failed-peer"})

WAIT, SUCCEEDED, FAILED, REQUEUE = "wait", "succeeded", "failed", "requeue"


@dataclass(frozen=True)
class TaskResult:
    exit_code: int | None = None
    stop_reason: str | None = None
    error: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str  # wait | succeeded | failed | requeue
    exit_code: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    stop_others: str | None = None  # StopTask reason for the tasks still running
    count_retry: bool = False
    reason: str = ""


def stop_error(stop_reason: str, detail: str = "") -> dict[str, Any]:
    """The executionInfo error of a job failed by a stop (terminate, delete, wall clock)."""
    message = detail if detail and detail != stop_reason else FAILING_MESSAGES.get(stop_reason, "The job was stopped.")
    return {"code": FAILING_STOPS.get(stop_reason, "JobTerminated"), "message": message, "details": []}


def decide(results: Mapping[int, TaskResult], latest: int, required: Collection[int],
           stop_requested: str | None = None, stop_detail: str = "") -> Outcome:
    last = results[latest]
    if last.stop_reason in REQUEUE_STOPS:
        return Outcome(REQUEUE, count_retry=REQUEUE_STOPS[last.stop_reason], stop_others="requeue",
                       reason=f"task {latest} was stopped: {last.stop_reason}")
    if last.stop_reason in AFTERMATH_STOPS:
        return Outcome(WAIT)
    done = all(i in results and results[i].exit_code == 0 and not results[i].error and not results[i].stop_reason
               for i in required)
    if last.stop_reason in FAILING_STOPS:
        return Outcome(FAILED, last.exit_code, [stop_error(last.stop_reason, stop_detail)], last.stop_reason,
                       reason=f"task {latest} stopped: {last.stop_reason}")
    failed = last.error is not None or (last.exit_code is not None and last.exit_code != 0)
    if stop_requested in FAILING_STOPS and not done and (failed or last.exit_code is None):
        return Outcome(FAILED, last.exit_code, [stop_error(stop_requested, stop_detail)], stop_requested,
                       reason=f"task {latest} ended while the job was stopping: {stop_requested}")
    if failed:
        code = (last.error or {}).get("code") or "JobFailed"
        message = (last.error or {}).get("message") or f"Task {latest} exited with code {last.exit_code}."
        details = [{"name": "taskIndex", "value": str(latest)}]
        if last.exit_code is not None:
            details.append({"name": "exitCode", "value": str(last.exit_code)})
        return Outcome(FAILED, last.exit_code, [{"code": code, "message": message, "details": details}],
                       "failed-peer", reason=f"task {latest} failed")
    if done:
        return Outcome(SUCCEEDED, 0, stop_others="job-finished", reason="every required task exited 0")
    return Outcome(WAIT)
