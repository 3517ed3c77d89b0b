"""The scheduling functions under the local trigger host (a real process), over real Azurite:
a kick assigns, node events finish the job, the safety timer repairs a lost pending row."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters import sched_store, storage
from shared.config import Settings
from shared.domain.messages import Assignment
from shared.ports.rows import Delete
from tests.scheduling.conftest import World, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def settings(storage_conn: str) -> Settings:
    """Azurite only: the host is another process."""
    return dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn, max_retries=2)


@pytest.fixture()
def host(storage_conn: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "AzureWebJobsStorage": storage_conn, "BATCHAI_STORAGE_CONNECTION_STRING": storage_conn,
           "BATCHAI_SAFETY_SCHEDULE": "*/1 * * * * *", "BATCHAI_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "shared.localhost", "--app", "tests.scheduling.host_app",
                             "--port", "0", "--state-dir", str(tmp_path), "--host-json", str(ROOT / "host.json"),
                             "--no-stderr-log", "--queue-lease", "30"], cwd=ROOT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _assignment(world: World, node_id: str) -> Assignment | None:
    messages = world.messages(node_id)
    assert len(messages) <= 1
    return messages[0] if messages and isinstance(messages[0], Assignment) else None


def test_kick_events_and_safety_timer_under_the_local_host(world: World, host: subprocess.Popen[bytes]) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("hosted")
    sched_store.kick(world.conn, world.key)
    assignment = wait_until(lambda: _assignment(world, n1), 60, "the assignment on the node queue")
    assert assignment.job_key == job.key and world.internal(job)["phase"] == "assigned"

    queues = world.port.queues
    queues.send(storage.Q_EVENTS, world.event("task-started", n1, job, assignment.assignment_id).to_json())
    wait_until(lambda: world.internal(job)["phase"] == "running", 30, "the job to run")
    queues.send(storage.Q_EVENTS, world.event("task-exited", n1, job, assignment.assignment_id, exit_code=0).to_json())
    wait_until(lambda: world.internal(job)["phase"] == "succeeded", 30, "the job to succeed")
    wait_until(lambda: world.node_row(n1)["state"] == "idle", 30, "the node to be freed")

    lost = world.submit("lost-index", at=1)
    world.sched.write(Delete(world.key, next(r["RowKey"] for r in world.rows() if r.get("jobKey") == lost.key)))
    second = wait_until(lambda: _assignment(world, n1), 60, "the safety timer to re-queue and assign the job")
    assert second.job_key == lost.key
    assert host.poll() is None
