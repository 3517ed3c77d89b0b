"""What a task sees of its GPU slots: CUDA_VISIBLE_DEVICES and AZ_BATCHAI_NUM_GPUS from the indices its
assignment names, the same devices requested for its container, and the GPUs a node declares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shared.agent.containers import create_options
from shared.agent.environment import task_env
from shared.agent.layout import TaskDirs
from shared.agent.runtime import TaskLaunch
from shared.config import Settings
from shared.domain.messages import AssignedTask, NodeAddress


def task(gpus: list[int] | None, variables: list[dict[str, str]] | None = None) -> AssignedTask:
    return AssignedTask(assignment_id="a1", job_key="s|rg|ws|exp|j", job_arm_id="/j", attempt=1, task_index=0,
                        nodes=[NodeAddress("n1", "127.0.0.1")], job={"environmentVariables": variables or []},
                        cluster={}, output_container="outputs", output_prefix="ws/exp/j/seg", gpus=gpus)


def env_of(a: AssignedTask, node_gpus: int, tmp_path: Path) -> dict[str, str]:
    dirs = TaskDirs(*(tmp_path / d for d in ("mounts", "jobmounts", "temp", "shared", "wd", "stdouterr")))
    return task_env({"PATH": "/usr/bin"}, dirs, a, node_gpus, {})


@pytest.mark.parametrize(("gpus", "node_gpus", "visible", "count"), [
    ([1], 2, "1", "1"),
    ([0, 2], 4, "0,2", "2"),
    ([], 2, "", "0"),  # a slot of a node's cores: no GPU at all
    (None, 2, None, "2"),  # an assignment that names no indices: the whole node
])
def test_a_task_sees_exactly_its_gpus(gpus: list[int] | None, node_gpus: int, visible: str | None, count: str,
                                      tmp_path: Path) -> None:
    env = env_of(task(gpus), node_gpus, tmp_path)
    assert env.get("CUDA_VISIBLE_DEVICES") == visible
    assert env["AZ_BATCHAI_NUM_GPUS"] == count


def test_the_job_cannot_widen_its_slots(tmp_path: Path) -> None:
    env = env_of(task([1], [{"name": "CUDA_VISIBLE_DEVICES", "value": "0,1"}]), 2, tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == "1"


def launch(tmp_path: Path, **kw: object) -> TaskLaunch:
    return TaskLaunch(command="true", env={"CUDA_VISIBLE_DEVICES": "3", "A": "1"}, cwd=str(tmp_path),
                      stdout_path=str(tmp_path / "o"), stderr_path=str(tmp_path / "e"),
                      container={"imageSourceRegistry": {"image": "busybox"}}, **kw)  # type: ignore[arg-type]


def test_a_container_is_given_the_same_devices(tmp_path: Path) -> None:
    opts = create_options(launch(tmp_path, gpus=2, gpu_ids=[1, 3]))
    [request] = opts["device_requests"]
    assert request["DeviceIDs"] == ["1", "3"] and request["Capabilities"] == [["gpu"]]
    assert not request.get("Count")
    # the container sees only those two, numbered from 0 inside
    assert opts["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_a_container_without_slot_gpus_requests_none(tmp_path: Path) -> None:
    assert "device_requests" not in create_options(launch(tmp_path, gpus=0, gpu_ids=[]))
    [whole] = create_options(launch(tmp_path, gpus=2))["device_requests"]  # no indices named: any two
    assert whole["Count"] == 2


@pytest.mark.parametrize(("value", "declared"), [("", None), ("0", 0), ("2", 2)])
def test_a_node_declares_its_gpus(value: str, declared: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHAI_NODE_GPUS", value)
    assert Settings.from_env().node_gpus == declared


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_declared_gpu_count_must_be_a_count(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHAI_NODE_GPUS", value)
    with pytest.raises(ValueError, match="BATCHAI_NODE_GPUS"):
        Settings.from_env()


def test_assigned_tasks_without_indices_still_parse() -> None:
    d = dataclasses.asdict(task([1]))
    del d["gpus"]
    assert AssignedTask.from_dict(d).gpus is None
