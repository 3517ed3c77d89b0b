"""A storage outage while a task runs loses no output: the agent uploads from where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shared.adapters import storage
from shared.localstack.azurite import start_azurite
from tests.agent.conftest import AgentProc, Events, assignment, blob_text, job_props, stop_process, wait_until


def test_output_written_during_an_outage_reaches_the_blob(start_agent: Callable[..., AgentProc],
                                                          tmp_path: Path) -> None:
    location = tmp_path / "azurite"
    server = start_azurite(location, log=tmp_path / "azurite.log")
    ports = (server.blob_port, server.queue_port, server.table_port)
    try:
        conn = server.connection_string
        storage.ensure_all(conn)
        events = Events(conn)
        agent = start_agent(conn=conn)
        a = assignment(agent, job_props("for i in $(seq 1 16); do echo tick $i; sleep 0.5; done"))
        agent.send(a)
        name = f"{a.output_prefix}/stdouterr/stdout.txt"
        wait_until(lambda: "tick 2" in (blob_text(conn, name) or ""), 30, what="output before the outage")

        server.stop()  # the outage: the task keeps running and writing
        local = wait_until(lambda: next(iter(agent.mount_root.rglob("stdouterr/stdout.txt")), None), 10,
                           what="the task's stdout file")
        wait_until(lambda: "tick 8" in local.read_text(), 20, what="output written during the outage")
        assert agent.process.poll() is None  # the agent outlives the outage

        server = start_azurite(location, *ports, log=tmp_path / "azurite.log")
        exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=60)
        assert exited["exit_code"] == 0, exited
        text = blob_text(conn, name) or ""
        assert text.split("\n")[:-1] == [f"tick {i}" for i in range(1, 17)]  # all of it, once, in order
        assert stop_process(agent.process) == 0
    finally:
        server.stop()
