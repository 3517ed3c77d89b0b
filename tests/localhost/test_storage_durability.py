"""Storage keeps what it acknowledged as far as Azurite can: on SIGTERM it saves and exits (nothing
written before the stop is lost, no SIGKILL needed), and a run that ended without saving (kill -9)
is reported at the next start with what may be lost."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.localstack.azurite import MARKER, Azurite, start_azurite


def write_some(server: Azurite, tag: str) -> None:
    conn = server.connection_string
    TableServiceClient.from_connection_string(conn).create_table_if_not_exists("durable").upsert_entity(
        {"PartitionKey": "p", "RowKey": tag})
    queue = QueueClient.from_connection_string(conn, f"durable-{tag}")
    queue.create_queue()
    queue.send_message(tag)
    BlobServiceClient.from_connection_string(conn).get_container_client(f"durable-{tag}").create_container()


def kept(server: Azurite, tag: str) -> dict[str, bool]:
    conn = server.connection_string
    tables = TableServiceClient.from_connection_string(conn)
    rows = {e["RowKey"] for e in tables.get_table_client("durable").list_entities()} \
        if any(t.name == "durable" for t in tables.list_tables()) else set()
    queues = {q.name for q in QueueServiceClient.from_connection_string(conn).list_queues()}
    containers = {c.name for c in BlobServiceClient.from_connection_string(conn).list_containers()}
    return {"row": tag in rows, "queue": f"durable-{tag}" in queues, "container": f"durable-{tag}" in containers}


def test_sigterm_saves_everything_acknowledged_and_leaves_no_unclean_mark(tmp_path: Path) -> None:
    location = tmp_path / "azurite"
    server = start_azurite(location)
    assert server.unclean is None and (location / MARKER).exists()
    write_some(server, "first")
    assert server.stop() is True  # it exited on SIGTERM: no SIGKILL
    assert not (location / MARKER).exists()

    again = start_azurite(location, server.blob_port, server.queue_port, server.table_port)
    try:
        assert again.unclean is None
        assert kept(again, "first") == {"row": True, "queue": True, "container": True}
    finally:
        assert again.stop() is True


def test_an_azurite_killed_without_saving_is_reported_at_the_next_start(tmp_path: Path) -> None:
    location = tmp_path / "azurite"
    server = start_azurite(location)
    write_some(server, "doomed")
    os.kill(server.pid, signal.SIGKILL)
    assert server.process is not None
    server.process.wait()

    again = start_azurite(location, server.blob_port, server.queue_port, server.table_port)
    try:
        notice = again.unclean
        assert notice is not None
        assert "Storage did not stop cleanly" in notice and f"pid {server.pid}" in notice
        assert "every 5 s" in notice and ("its last save was at" in notice or "it never saved" in notice)
        assert "queue messages" in notice and "jobs" in notice
    finally:
        assert again.stop() is True
    third = start_azurite(location, server.blob_port, server.queue_port, server.table_port)
    try:
        assert third.unclean is None  # the stop after the report was clean
    finally:
        third.stop()
