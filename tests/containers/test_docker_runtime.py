"""DockerRuntime against a real podman engine (Docker API): env, binds, logs, exit codes, stop, cleanup."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import docker
import pytest

from shared.agent.containers import LABEL_TASK, DockerRuntime
from shared.agent.runtime import TaskLaunch, TaskStartError
from shared.decisions.toolkit_shell import ShellProcess, run_processes
from tests.containers.conftest import IMAGE, TEST_LABEL, wait_until

pytestmark = pytest.mark.podman


def launch(tmp_path: Path, command: str, **kw) -> TaskLaunch:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    defaults = {
        "env": {},
        "cwd": str(work),
        "stdout_path": str(tmp_path / "stdout.txt"),
        "stderr_path": str(tmp_path / "stderr.txt"),
        "container": {"imageSourceRegistry": {"image": IMAGE}},
        "binds": [str(work)],
        "name": f"test-{uuid.uuid4().hex[:12]}",
        "labels": {TEST_LABEL: "true"},
    }
    return TaskLaunch(command=command, **{**defaults, **kw})


def task_containers(url: str, name: str) -> list:
    return docker.DockerClient(base_url=url).containers.list(all=True, filters={"label": f"{LABEL_TASK}={name}"})


def test_container_sees_env_and_bind_and_writes_output_to_the_host(podman_url: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "work" / "outputs"
    command = (
        'echo "var=$MY_VAR pwd=$(pwd) path=$PATH"; mkdir -p "$AZ_BATCHAI_OUTPUT_MODEL";'
        ' echo trained > "$AZ_BATCHAI_OUTPUT_MODEL/model.txt"; echo "to stderr" >&2'
    )
    env = {"MY_VAR": "hello world", "AZ_BATCHAI_OUTPUT_MODEL": str(out_dir), "PATH": "/host/only/bin"}
    lt = launch(tmp_path, command, env=env)
    task = DockerRuntime(podman_url).start(lt)
    assert task.wait(timeout=300) == 0
    stdout = Path(lt.stdout_path).read_text()
    # the host's PATH does not replace the image's
    assert stdout.startswith(f"var=hello world pwd={lt.cwd} path=")
    assert "/host/only/bin" not in stdout
    assert Path(lt.stderr_path).read_text() == "to stderr\n"
    assert (out_dir / "model.txt").read_text() == "trained\n"
    assert task.poll() == 0
    assert task_containers(podman_url, lt.name) == []  # removed once its logs were drained


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_is_returned(podman_url: str, tmp_path: Path, code: int) -> None:
    task = DockerRuntime(podman_url).start(launch(tmp_path, f"echo bye; exit {code}"))
    assert task.wait(timeout=300) == code
    assert task.poll() == code
    assert Path(tmp_path / "stdout.txt").read_text() == "bye\n"


def test_poll_reports_running_then_the_exit_code(podman_url: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    lt = launch(tmp_path, f'until [ -e "{work}/go" ]; do sleep 0.1; done; exit 5')
    task = DockerRuntime(podman_url).start(lt)
    assert task.poll() is None
    assert task.wait(timeout=1) is None  # still running: the wait times out
    (work / "go").touch()
    wait_until(lambda: task.poll() is not None, timeout=300)
    assert task.poll() == 5


def test_stop_ends_a_running_container(podman_url: str, tmp_path: Path) -> None:
    lt = launch(tmp_path, "echo started; sleep 300")
    task = DockerRuntime(podman_url).start(lt)
    wait_until(lambda: "started" in Path(lt.stdout_path).read_text(), timeout=300)
    assert task.poll() is None
    task.stop(grace_seconds=1)
    assert task.poll() in (137, 143)
    task.stop(grace_seconds=1)  # idempotent
    assert task_containers(podman_url, lt.name) == []


def test_host_network_reaches_a_port_on_the_host(podman_url: str, tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(60)
        port = server.getsockname()[1]
        task = DockerRuntime(podman_url).start(
            launch(tmp_path, f"echo from-container | nc 127.0.0.1 {port}", host_network=True)
        )
        conn, _ = server.accept()
        with conn:
            conn.settimeout(30)
            assert conn.recv(100) == b"from-container\n"
    assert task.wait(timeout=300) == 0


def test_shm_size_is_applied(podman_url: str, tmp_path: Path) -> None:
    container = {"imageSourceRegistry": {"image": IMAGE}, "shmSize": "96m"}
    lt = launch(tmp_path, "df -k /dev/shm | tail -1", container=container)
    task = DockerRuntime(podman_url).start(lt)
    assert task.wait(timeout=300) == 0
    assert Path(lt.stdout_path).read_text().split()[1] == str(96 * 1024)


def test_a_multi_process_plan_runs_under_busybox_sh(podman_url: str, tmp_path: Path) -> None:
    """The shell a plan builds for several processes per node is POSIX: it runs where there is no bash."""
    processes = [
        ShellProcess("sh -c 'echo worker $AZ_BATCHAI_TASK_INDEX; exit 4'", {"AZ_BATCHAI_TASK_INDEX": "1"}, True),
        ShellProcess("sh -c 'echo ps up; sleep 300'", {"AZ_BATCHAI_TASK_INDEX": "0"}, False),
    ]
    lt = launch(tmp_path, run_processes(processes))
    task = DockerRuntime(podman_url).start(lt)
    assert task.wait(timeout=300) == 4  # the worker's exit; the parameter server was stopped
    assert "worker 1" in Path(lt.stdout_path).read_text()


def test_local_image_needs_no_registry_and_missing_image_fails_to_pull(podman_url: str, tmp_path: Path) -> None:
    missing = {"imageSourceRegistry": {"image": "batchai-test/absent:1", "serverUrl": "https://127.0.0.1:9"}}
    with pytest.raises(TaskStartError) as err:
        DockerRuntime(podman_url).start(launch(tmp_path, "true", container=missing))
    assert err.value.code == "ImagePullFailed"
    assert "127.0.0.1:9/batchai-test/absent:1" in err.value.message


def test_registry_password_from_key_vault_goes_through_the_reader(podman_url: str, tmp_path: Path) -> None:
    secret_url = "https://vault.example/secrets/registry-password"
    registry = {
        "image": "batchai-test/private:1",
        "serverUrl": "127.0.0.1:9",
        "credentials": {
            "username": "u",
            "passwordSecretReference": {"sourceVault": {"id": "v"}, "secretUrl": secret_url},
        },
    }
    container = {"imageSourceRegistry": registry}
    with pytest.raises(TaskStartError) as no_reader:
        DockerRuntime(podman_url).start(launch(tmp_path, "true", container=container))
    assert no_reader.value.code == "RegistryCredentialsUnavailable"
    assert secret_url in no_reader.value.message

    asked: list[str] = []

    def reader(url: str) -> str:
        asked.append(url)
        return "s3cret"

    with pytest.raises(TaskStartError) as pull:
        DockerRuntime(podman_url, read_secret=reader).start(launch(tmp_path, "true", container=container))
    assert asked == [secret_url]
    assert pull.value.code == "ImagePullFailed"
    assert "s3cret" not in pull.value.message

    def failing(url: str) -> str:
        raise PermissionError("forbidden by the vault")

    with pytest.raises(TaskStartError) as denied:
        DockerRuntime(podman_url, read_secret=failing).start(launch(tmp_path, "true", container=container))
    assert denied.value.code == "RegistryCredentialsUnavailable"
    assert "forbidden by the vault" in denied.value.message


def test_remove_tasks_cleans_up_leftover_containers(podman_url: str, tmp_path: Path) -> None:
    lt = launch(tmp_path, "sleep 300")
    task = DockerRuntime(podman_url).start(lt)
    assert len(task_containers(podman_url, lt.name)) == 1
    assert DockerRuntime(podman_url).remove_tasks(lt.name) == 1
    assert task_containers(podman_url, lt.name) == []
    assert task.wait(timeout=300) == 137  # removed under it: reported as killed
