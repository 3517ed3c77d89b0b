"""DockerRuntime without a running engine: the engine address, create options, an unreachable engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.agent.container_images import image_reference
from shared.agent.containers import DOCKER_SOCKET, PODMAN_SOCKET, DockerRuntime, create_options, default_base_url
from shared.agent.runtime import TaskLaunch, TaskStartError


def make_launch(tmp_path: Path, **kw) -> TaskLaunch:
    base = {
        "command": "echo hi",
        "env": {"A": "1", "PATH": "/host/bin", "HOME": "/root"},
        "cwd": str(tmp_path),
        "stdout_path": str(tmp_path / "o"),
        "stderr_path": str(tmp_path / "e"),
        "container": {"imageSourceRegistry": {"image": "busybox"}},
        "binds": [str(tmp_path)],
        "name": "job-1-task-0",
        "labels": {"batchai.assignment": "a-1"},
    }
    return TaskLaunch(**{**base, **kw})


def test_an_unreachable_engine_is_a_start_error_and_nothing_runs_on_the_host(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    runtime = DockerRuntime(base_url=f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(TaskStartError) as err:
        runtime.start(make_launch(tmp_path, command=f"touch {marker}"))
    assert err.value.code == "ContainerEngineUnavailable"
    assert "no-engine.sock" in err.value.message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("environ", "present", "expected"),
    [
        ({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, set(), "tcp://127.0.0.1:2375"),
        ({}, {"/var/run/docker.sock", "/tmp/podman.sock"}, DOCKER_SOCKET),
        ({}, {"/tmp/podman.sock"}, PODMAN_SOCKET),
        ({}, set(), DOCKER_SOCKET),
    ],
)
def test_default_base_url(environ: dict[str, str], present: set[str], expected: str) -> None:
    assert default_base_url(environ, exists=lambda p: p in present) == expected


def test_create_options(tmp_path: Path) -> None:
    settings = {"imageSourceRegistry": {"image": "busybox"}, "shmSize": "2g"}
    opts = create_options(make_launch(tmp_path, container=settings, host_network=True, gpus=2))
    assert opts["entrypoint"] == ["/bin/sh", "-c"]
    assert opts["command"][1:] == ["batchai-task", "echo hi"]
    assert opts["environment"] == {"A": "1"}  # host-only variables stay on the host
    assert opts["volumes"] == {str(tmp_path): {"bind": str(tmp_path), "mode": "rw"}}
    assert opts["working_dir"] == str(tmp_path)
    assert opts["shm_size"] == "2g"
    assert opts["network_mode"] == "host"
    assert opts["labels"] == {"batchai.managed": "true", "batchai.task": "job-1-task-0", "batchai.assignment": "a-1"}
    [gpus] = opts["device_requests"]
    assert gpus["Count"] == 2 and gpus["Capabilities"] == [["gpu"]]
    assert "ulimits" not in opts  # podman: any ulimit replaces the engine's defaults


def test_single_node_cpu_options_leave_network_and_devices_alone(tmp_path: Path) -> None:
    opts = create_options(make_launch(tmp_path))
    assert "network_mode" not in opts and "device_requests" not in opts and "shm_size" not in opts


@pytest.mark.parametrize(
    ("registry", "reference"),
    [
        ({"image": "pytorch/pytorch:0.4_cuda9_cudnn7"}, "pytorch/pytorch:0.4_cuda9_cudnn7"),
        ({"image": "team/train:1", "serverUrl": "https://myreg.azurecr.io"}, "myreg.azurecr.io/team/train:1"),
        ({"image": "myreg.azurecr.io/team/train:1", "serverUrl": "myreg.azurecr.io"}, "myreg.azurecr.io/team/train:1"),
    ],
)
def test_image_reference(registry: dict, reference: str) -> None:
    assert image_reference(registry) == reference
