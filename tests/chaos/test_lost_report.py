"""Storage loses a node's `task-exited` event (as a storage crash does when the send was acknowledged
but not yet saved): the tables still say the job runs on the node, and the node is idle. The trigger
host is killed while the task ends, the test takes the event off `node-events` for good, and the host
is restarted: the safety pass sees that the node's heartbeats no longer list the assignment and sends
it again, the node answers with the end it recorded, and the job succeeds, having run once."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from shared.adapters import storage
from shared.localstack.stack import stack_status, start_stack
from tests.chaos.conftest import MAX_RETRIES, Chaos
from tests.chaos.runs import job_command
from tests.polling import wait_until

pytestmark = pytest.mark.slow

WS, EXP, CLUSTER, JOB = "chaos", "lost", "one", "job"


def take_exit_event(conn: str) -> dict[str, Any] | None:
    """The task-exited event on node-events, deleted; other events are left for the host."""
    events = storage.queue(conn, storage.Q_EVENTS)
    for message in events.receive_messages(max_messages=32, visibility_timeout=1):
        event = json.loads(message.content)
        if event.get("kind") == "task-exited":
            events.delete_message(message)
            return dict(event)
    return None


def test_a_lost_task_exited_event_is_recovered_from_the_node(chaos: Chaos) -> None:
    chaos.setup(WS, EXP, CLUSTER, 1)
    log = chaos.run_log()
    go_here, go_on_nodes = chaos.scratch("go")
    params = chaos.job_parameters(WS, CLUSTER, JOB, log, 1)
    params.custom_toolkit_settings.command_line = (
        f'touch "{go_on_nodes}/waiting"; while [ ! -e "{go_on_nodes}/go" ]; do sleep 0.1; done; '
        f'{job_command(log.on_node, JOB, 1)}')
    chaos.client.jobs.begin_create(chaos.rg, WS, EXP, JOB, params)
    wait_until(lambda: (go_here / "waiting").exists(), 300, what="the task to run")
    before = chaos.pids()

    os.kill(before["host"], signal.SIGKILL)
    wait_until(lambda: not stack_status(chaos.state_dir)["running"], 30, what="the host to be seen dead")
    (go_here / "go").touch()
    lost = wait_until(lambda: take_exit_event(chaos.endpoint["storage_connection_string"]), 300,
                      what="the task-exited event")
    assert lost["job_key"].endswith(f"|{JOB}") and lost["exit_code"] == 0

    after = start_stack(chaos.state_dir, fixed_ports=False, settings={"BATCHAI_MAX_RETRIES": str(MAX_RETRIES)})
    assert after.pids["azurite"] == before["azurite"]
    chaos.all_ended(WS, EXP, [JOB])
    job = chaos.client.jobs.get(chaos.rg, WS, EXP, JOB)
    assert job.execution_state == "succeeded" and job.execution_info.exit_code == 0
    assert len(log.started(JOB)) == 1
