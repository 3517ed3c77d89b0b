"""Log streams start their blobs side by side and create the container only when it is missing."""

from __future__ import annotations

import uuid
from pathlib import Path

from azure.storage.blob import ContainerClient

from shared.agent.node_storage import ContainerBlobs
from shared.agent.streaming import LogStreamer


def test_streams_create_a_missing_container_then_their_blobs(storage_conn: str, tmp_path: Path) -> None:
    name = f"logs-{uuid.uuid4().hex[:12]}"
    container = ContainerClient.from_connection_string(storage_conn, name)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    out.write_text("hello\n")
    err.touch()
    streamer = LogStreamer(ContainerBlobs(container), [(out, "j/stdout.txt"), (err, "j/stderr.txt")], interval_s=30)
    streamer.start().close()
    assert container.exists()
    assert container.get_blob_client("j/stdout.txt").download_blob().readall() == b"hello\n"
    assert container.get_blob_client("j/stderr.txt").download_blob().readall() == b""

    # A second run of the task into the existing container starts its logs afresh.
    out.write_text("again\n")
    streams = [(out, "j/stdout.txt"), (err, "j/stderr.txt")]
    LogStreamer(ContainerBlobs(container), streams, interval_s=30).start().close()
    assert container.get_blob_client("j/stdout.txt").download_blob().readall() == b"again\n"
