"""A queue listener polls at once when its own process puts a message on its queue (as the Functions
host's shared queue watcher does), instead of waiting out its backed-off polling interval; and
host.json values can be overridden by `AzureFunctionsJobHost__...` app settings."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient, QueueMessage

from shared.adapters import queue_signals, storage
from shared.localhost.bindings import FunctionSpec
from shared.localhost.hostjson import HostConfig, QueueOptions
from shared.localhost.invoke import Invoker
from shared.localhost.loader import by_trigger, load_functions
from shared.localhost.queues import QueueListener
from tests.polling import wait_until_async

SLOW_POLLING = QueueOptions(batch_size=4, new_batch_threshold=2, max_polling_interval_s=30.0)


class CountingListener(QueueListener):
    """Counts its polls, and records how each of its waits between polls ended: cut short by a wake
    (True) or run to its full backed-off delay (False), and how many waits it had made when it took
    its first message."""

    polls = 0
    waits_before_delivery: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[bool] = []

    def _receive(self) -> list[QueueMessage]:
        self.polls += 1
        return super()._receive()

    async def _sleep(self, stop: asyncio.Event, delay: float) -> None:
        await super()._sleep(stop, delay)
        assert self._wake is not None
        self.waits.append(self._wake.is_set())

    async def _process(self, m: QueueMessage) -> None:
        if self.waits_before_delivery is None:
            self.waits_before_delivery = len(self.waits)
        await super()._process(m)


def _records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _delivery_after_backoff(storage_conn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            send_in_process: bool) -> list[bool]:
    """How the listener's waits ended between sending a message and taking it (True: woken), the
    message sent once the listener has backed off to a wait of at least 0.1 * 1.6**7 = 2.7 s."""
    queue_name = f"wake-{uuid.uuid4().hex[:12]}"
    records = tmp_path / f"records-{queue_name}.jsonl"
    monkeypatch.setenv("AzureWebJobsStorage", storage_conn)
    monkeypatch.setenv("SAMPLE_QUEUE", queue_name)
    monkeypatch.setenv("SAMPLE_RECORD_FILE", str(records))
    storage.ensure_queue(storage_conn, queue_name)
    function = by_trigger(load_functions("tests.localhost.sample_app"), "queueTrigger")[0]
    spec = FunctionSpec.of(function)
    body = json.dumps({"tag": queue_name})

    async def scenario() -> list[bool]:
        invoker = Invoker(max_concurrency=2)
        listener = CountingListener(spec, SLOW_POLLING, invoker, rng=random.Random(7))
        observer = lambda name: listener.notify() if name == queue_name else None  # noqa: E731
        queue_signals.subscribe(observer)
        stop = asyncio.Event()
        running = asyncio.create_task(listener.run(stop))
        try:
            # 7 empty polls behind it: the next wait is >= 2.7 s
            await wait_until_async(lambda: listener.polls >= 8, 300, what="the listener's polls")
            sent = len(listener.waits)
            if send_in_process:
                await asyncio.to_thread(storage.queue(storage_conn, queue_name).send_message, body)
            else:  # another process's client: no signal reaches the listener
                await asyncio.to_thread(QueueClient.from_connection_string(storage_conn, queue_name).send_message,
                                        body)
            await wait_until_async(lambda: _records(records), 300, what="the message's delivery", interval=0.02)
            assert listener.waits_before_delivery is not None
            return listener.waits[sent:listener.waits_before_delivery]
        finally:
            stop.set()
            await running
            await listener.drain(5)
            queue_signals.unsubscribe(observer)
            invoker.close()

    return asyncio.run(scenario())


def test_message_sent_by_this_process_is_delivered_at_once(storage_conn: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    waits = _delivery_after_backoff(storage_conn, tmp_path, monkeypatch, send_in_process=True)
    assert all(waits), waits  # no backed-off wait ran its course: the send woke the listener


def test_message_from_elsewhere_waits_for_the_next_poll(storage_conn: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    waits = _delivery_after_backoff(storage_conn, tmp_path, monkeypatch, send_in_process=False)
    assert not any(waits), waits  # nothing woke the listener: the message waited for a poll


def test_app_settings_override_host_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0", "extensions": {"queues": {
        "maxPollingInterval": "00:00:02", "batchSize": 16}}}))
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__maxPollingInterval", "00:00:00.250")
    monkeypatch.setenv("AZUREFUNCTIONSJOBHOST__Extensions__Queues__BatchSize", "4")
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__http__routePrefix", "v1")
    config = HostConfig.load(host_json)
    assert config.queues.max_polling_interval_s == 0.25
    assert config.queues.batch_size == 4
    assert config.route_prefix == "v1"
