"""The pure job outcome of task exits, table-driven."""

from __future__ import annotations

import pytest

from shared.decisions.job_outcome import FAILED, REQUEUE, SUCCEEDED, WAIT, TaskResult, decide

OK = TaskResult(0)

CASES = [
    pytest.param({0: OK}, 0, {0}, None, (SUCCEEDED, 0, None, "job-finished"), id="single-success"),
    pytest.param({0: TaskResult(3)}, 0, {0}, None, (FAILED, 3, "JobFailed", "failed-peer"), id="nonzero"),
    pytest.param({0: TaskResult(None, error={"code": "ImagePullFailed", "message": "no image"})}, 0, {0}, None,
                 (FAILED, None, "ImagePullFailed", "failed-peer"), id="agent-error-code"),
    pytest.param({0: OK}, 0, {0, 1}, None, (WAIT, None, None, None), id="waits-for-required-peer"),
    pytest.param({0: OK, 1: OK}, 1, {0, 1}, None, (SUCCEEDED, 0, None, "job-finished"), id="all-required-done"),
    pytest.param({1: TaskResult(2)}, 1, {0}, None, (FAILED, 2, "JobFailed", "failed-peer"),
                 id="serving-task-crash-fails"),
    pytest.param({0: TaskResult(137, "walltime")}, 0, {0}, None,
                 (FAILED, 137, "JobWallClockTimeExceeded", "walltime"), id="walltime"),
    pytest.param({0: TaskResult(143, "terminated")}, 0, {0}, "terminated", (FAILED, 143, "JobTerminated", "terminated"),
                 id="terminated"),
    pytest.param({0: TaskResult(1)}, 0, {0}, "deleted", (FAILED, 1, "JobDeleted", "deleted"),
                 id="stopping-job-failure-takes-the-stop-code"),
    pytest.param({0: OK}, 0, {0}, "terminated", (SUCCEEDED, 0, None, "job-finished"),
                 id="finished-before-the-stop-arrived"),
    pytest.param({1: TaskResult(143, "job-finished")}, 1, {0}, None, (WAIT, None, None, None), id="aftermath-noise"),
    pytest.param({0: TaskResult(143, "preempted")}, 0, {0}, None, (REQUEUE, None, None, "requeue"), id="preempted"),
]


@pytest.mark.parametrize(("results", "latest", "required", "stopping", "expected"), CASES)
def test_outcome(results: dict[int, TaskResult], latest: int, required: set[int], stopping: str | None,
                 expected: tuple) -> None:
    out = decide(results, latest, required, stopping)
    assert (out.kind, out.exit_code, out.errors[0]["code"] if out.errors else None, out.stop_others) == expected


def test_requeue_counts_only_node_removal() -> None:
    assert decide({0: TaskResult(None, "preempted")}, 0, {0}).count_retry is False
    assert decide({0: TaskResult(None, "requeue")}, 0, {0}).count_retry is False
    assert decide({0: TaskResult(None, "node-removed")}, 0, {0}).count_retry is True
