"""Container jobs on podman run as the job's user with an allow-listed environment, and get bound only the
task's directories, the mount roots and what the agent's mounts reach: never a host path a job linked."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.agent.job_users import FIRST_UID, POOL_SIZE
from tests.agent.conftest import AgentProc, Events, assignment, blob_text, job_props
from tests.containers.conftest import IMAGE, podman_url  # noqa: F401 - the podman fixture

pytestmark = pytest.mark.podman
CONTAINER = {"imageSourceRegistry": {"image": IMAGE}}


def test_a_container_job_runs_as_its_user_with_its_own_environment(
        start_agent: Callable[..., AgentProc], events: Events, podman_url: str) -> None:  # noqa: F811
    agent = start_agent(env={"DOCKER_HOST": podman_url, "AGENT_ONLY_SETTING": "not-for-jobs"})
    job = job_props('echo "uid=$(id -u) gid=$(id -g) home=$HOME"; env; echo made > "$AZ_BATCHAI_OUTPUT_OUT/f.txt"',
                    containerSettings=CONTAINER, outputDirectories=[{"id": "OUT"}],
                    environmentVariables=[{"name": "MINE", "value": "yes"}])
    a = assignment(agent, job)
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=120)
    assert exited["exit_code"] == 0, exited
    out = blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or ""
    uid, gid, home = re.search(r"uid=(\d+) gid=(\d+) home=(\S+)", out).groups()  # type: ignore[union-attr]
    assert FIRST_UID <= int(uid) < FIRST_UID + POOL_SIZE and gid == uid
    assert home.endswith("/home") and "MINE=yes" in out
    assert "AGENT_ONLY_SETTING" not in out and "BATCHAI_STORAGE" not in out
    assert (blob_text(agent.conn, f"{a.output_prefix}/outputs/OUT/f.txt") or "").strip() == "made"


def test_a_link_under_the_mount_root_binds_nothing_of_the_host(
        start_agent: Callable[..., AgentProc], events: Events, podman_url: str, tmp_path: Path) -> None:  # noqa: F811
    agent = start_agent(env={"DOCKER_HOST": podman_url})
    host_dir = tmp_path / f"host-{uuid.uuid4().hex[:6]}"
    host_dir.mkdir()
    (host_dir / "secret.txt").write_text("host secret\n")
    agent.mount_root.mkdir(parents=True, exist_ok=True)
    (agent.mount_root / "planted").symlink_to(host_dir)  # left by an earlier job in the node-shared root
    job = job_props(f'cat {host_dir}/secret.txt; echo "rc=$?"; ls {host_dir}', containerSettings=CONTAINER)
    a = assignment(agent, job)
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=120)
    assert "error" not in exited, exited
    out = blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or ""
    assert "host secret" not in out and "rc=1" in out, out
