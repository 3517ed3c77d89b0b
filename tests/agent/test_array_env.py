"""A task of an array job sees its index and the array's count; any other task sees neither."""

from __future__ import annotations

from pathlib import Path

from shared.agent.environment import task_env
from shared.agent.layout import TaskDirs
from shared.domain.messages import AssignedTask, NodeAddress


def env_of(job: dict[str, object], tmp_path: Path) -> dict[str, str]:
    dirs = TaskDirs(*(tmp_path / name for name in ("mnt", "jobmnt", "tmp", "shared", "wd", "out")))
    task = AssignedTask(assignment_id="a1", job_key="s|rg|ws|e|j-3", job_arm_id="/jobs/j-3", attempt=1, task_index=0,
                        nodes=[NodeAddress("n1", "10.0.0.4")], job=job, cluster={}, output_container="c",
                        output_prefix="p")
    return task_env({"PATH": "/usr/bin"}, dirs, task, 0, {})


def test_array_child_gets_index_and_count(tmp_path: Path) -> None:
    env = env_of({"arrayIndex": 3, "arrayCount": 20, "customToolkitSettings": {"commandLine": "true"}}, tmp_path)
    assert (env["AZ_BATCHAI_ARRAY_INDEX"], env["AZ_BATCHAI_ARRAY_COUNT"]) == ("3", "20")
    assert env["AZ_BATCHAI_TASK_INDEX"] == "0"  # the rank within the child's own nodes, as before


def test_index_zero_is_given_too_and_other_jobs_get_none(tmp_path: Path) -> None:
    assert env_of({"arrayIndex": 0, "arrayCount": 1}, tmp_path)["AZ_BATCHAI_ARRAY_INDEX"] == "0"
    plain = env_of({"customToolkitSettings": {"commandLine": "true"}}, tmp_path)
    assert not {"AZ_BATCHAI_ARRAY_INDEX", "AZ_BATCHAI_ARRAY_COUNT"} & set(plain)
