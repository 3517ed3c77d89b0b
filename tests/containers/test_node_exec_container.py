"""`job node exec` in a container job: the command runs inside the task's running container (podman's Docker
API), as the task's user, in its working directory, with its variables; its output and exit code come back."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.agent.containers import DockerRuntime
from shared.agent.node_exec import in_container
from shared.agent.runtime import RunAs, TaskLaunch, TaskStartError
from tests.containers.conftest import IMAGE, TEST_LABEL, wait_until

pytestmark = pytest.mark.podman


def test_a_command_runs_inside_the_jobs_running_container(podman_url: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    name = f"job-{uuid.uuid4().hex[:8]}-0"
    labels = {TEST_LABEL: "true", "batchai.assignment": uuid.uuid4().hex}
    task = TaskLaunch(command=f"echo inside > {work}/seen; while [ ! -e {work}/go ]; do sleep 0.2; done",
                      env={"JOB_VAR": "from the job", "PATH": "/host/only"}, cwd=str(work),
                      stdout_path=str(tmp_path / "stdout.txt"), stderr_path=str(tmp_path / "stderr.txt"),
                      container={"imageSourceRegistry": {"image": IMAGE}}, binds=[str(work)], name=name,
                      labels=labels, run_as=RunAs(4321, 4321))
    running = DockerRuntime(podman_url).start(task)
    try:
        wait_until(lambda: (work / "seen").exists(), 60, "the job's container to start")
        exec_launch = TaskLaunch(**{**task.__dict__, "command": 'echo "$JOB_VAR in $(pwd) as $(id -u)"; '
                                                                'echo oops >&2; exit 4'})
        result = in_container(exec_launch, 30, podman_url)
        assert result == {"exitCode": 4, "stdout": f"from the job in {work} as 4321\n", "stderr": "oops\n"}
        late = in_container(TaskLaunch(**{**task.__dict__, "command": "sleep 30"}), 1, podman_url)
        assert late["exitCode"] != 0  # past its time limit: killed
    finally:
        (work / "go").touch()
    assert running.wait(300) == 0
    with pytest.raises(TaskStartError) as gone:
        in_container(TaskLaunch(**{**task.__dict__, "command": "true"}), 30, podman_url)
    assert gone.value.code == "JobNotRunningOnNode"
