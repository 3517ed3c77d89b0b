"""Blob triggers through the local host process: a blob version fires once, an overwrite fires again,
a restarted host does not fire again (receipts), and a failing blob goes to the poison queue."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from tests.localhost.conftest import SampleHost, wait_until


def _container(host: SampleHost, name: str) -> ContainerClient:
    client = BlobServiceClient.from_connection_string(host.conn).get_container_client(name)
    with contextlib.suppress(ResourceExistsError):
        client.create_container()
    return client


def test_each_blob_version_fires_once_also_across_a_restart(sample_host_factory: Callable[..., SampleHost]) -> None:
    host = sample_host_factory({"SAMPLE_CONTAINER": "blobs-once"}).start()
    blobs = _container(host, "blobs-once")

    def fired(content: str) -> Callable[[], bool]:
        return lambda: bool(host.records("blob", name="blobs-once/a.txt", content=content))

    blobs.upload_blob("a.txt", b"version 1", overwrite=True)
    wait_until(fired("version 1"), 20, "the first version to fire")
    blobs.upload_blob("a.txt", b"version 2", overwrite=True)
    wait_until(fired("version 2"), 20, "the overwrite to fire")
    first = host.records("blob", name="blobs-once/a.txt")
    assert [r["content"] for r in first] == ["version 1", "version 2"]
    assert first[1]["length"] == len(b"version 2") and first[1]["uri"].endswith("/blobs-once/a.txt")

    assert host.stop() == 0
    host.start()
    # Two later blobs fire: the restarted host has scanned a.txt at least twice by then.
    blobs.upload_blob("b.txt", b"after restart", overwrite=True)
    wait_until(lambda: host.records("blob", name="blobs-once/b.txt"), 20, "b.txt to fire")
    blobs.upload_blob("c.txt", b"after restart", overwrite=True)
    wait_until(lambda: host.records("blob", name="blobs-once/c.txt"), 20, "c.txt to fire")
    assert len(host.records("blob", name="blobs-once/a.txt")) == 2
    assert len(host.records("blob", name="blobs-once/b.txt")) == 1


def test_blob_failing_five_times_goes_to_the_blob_poison_queue(sample_host_factory: Callable[..., SampleHost]) -> None:
    host = sample_host_factory({"SAMPLE_CONTAINER": "blobs-poison"}).start()
    _container(host, "blobs-poison").upload_blob("bad.txt", b"fail please", overwrite=True)
    poison = QueueClient.from_connection_string(host.conn, "webjobs-blobtrigger-poison")

    def poisoned() -> list[dict[str, str]]:
        try:
            messages = poison.peek_messages(max_messages=32)
        except ResourceNotFoundError:
            return []
        found = [json.loads(base64.b64decode(m.content)) for m in messages]
        return [m for m in found if m["ContainerName"] == "blobs-poison" and m["BlobName"] == "bad.txt"]

    [message] = wait_until(poisoned, 30, "the poison message")
    assert message["FunctionId"] == "Host.Functions.on_blob" and message["ETag"]
    assert len(host.records("blob", name="blobs-poison/bad.txt")) == 5
