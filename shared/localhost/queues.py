"""Queue triggers on the local trigger host, with the storage extension's semantics: polling that
backs off from 100 ms (doubling, x0.8..1.2 jitter) to maxPollingInterval and resets on a message;
a poll at once when this host itself put a message on the queue (`notify`, as the Functions host's
shared queue watcher does);
batchSize and newBatchThreshold; messages held with a renewed visibility lease while the function
runs; deleted on success; released after host.json's visibilityTimeout on failure; moved to
`<queue>-poison` with their original content after maxDequeueCount attempts."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FunctionQueueMessage
from azure.storage.queue import QueueClient, QueueMessage

from shared.localhost.bindings import FunctionSpec, poll_queue, send_text
from shared.localhost.hostjson import QueueOptions
from shared.localhost.invoke import Invoker

log = logging.getLogger("batchai.localhost")

MIN_POLL_S = 0.1
MAX_ERROR_WAIT_S = 5.0  # between polls that failed (storage down): 0.5 s, doubling up to this
DEFAULT_LEASE_S = 600.0  # the host takes a message for 10 minutes and renews halfway


def decode_body(content: str, encoding: str) -> bytes:
    """The message body the function sees; base64 falls back to the text itself when it is not base64."""
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            return content.encode()
    return content.encode()


def next_delay(delay: float, maximum: float, rng: random.Random) -> float:
    return min(maximum, max(MIN_POLL_S, delay * 2 * rng.uniform(0.8, 1.2)))


def to_function_message(m: QueueMessage, encoding: str) -> FunctionQueueMessage:
    return FunctionQueueMessage(id=m.id, body=decode_body(m.content, encoding), dequeue_count=m.dequeue_count,
                             expiration_time=m.expires_on, insertion_time=m.inserted_on,
                             time_next_visible=m.next_visible_on, pop_receipt=m.pop_receipt)


class QueueListener:
    def __init__(self, spec: FunctionSpec, options: QueueOptions, invoker: Invoker,
                 lease_s: float = DEFAULT_LEASE_S, rng: random.Random | None = None) -> None:
        self.spec = spec
        self.options = options
        self.invoker = invoker
        self.lease_s = lease_s
        self.rng = rng or random.Random()
        self.queue_name = str(spec.trigger["queueName"]).lower()
        self._conn = spec.connection
        self._client: QueueClient = poll_queue(self._conn, self.queue_name)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def notify(self) -> None:
        """A message was just put on this queue by this process: poll now (any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def _sleep(self, stop: asyncio.Event, delay: float) -> None:
        """Wait `delay`, or less when stopped or notified."""
        assert self._wake is not None
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
        _, pending = await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        delay = MIN_POLL_S
        failures = 0
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        log.info("Listening to queue '%s' for '%s'", self.queue_name, self.spec.name)
        while not stop.is_set():
            self._wake.clear()
            if len(self._in_flight) > self.options.new_batch_threshold:
                await self._wait_any(stop)
                continue
            try:
                messages = await asyncio.to_thread(self._receive)
            except AzureError as e:
                failures += 1
                wait = min(MAX_ERROR_WAIT_S, 0.5 * 2 ** (failures - 1))
                log.warning("Polling queue '%s' failed (%s); retrying in %.1f s", self.queue_name, e, wait)
                await self._sleep(stop, wait)
                continue
            failures = 0
            if messages:
                delay = MIN_POLL_S
                for m in messages:
                    task = asyncio.create_task(self._process(m))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                continue
            await self._sleep(stop, delay)
            if not self._wake.is_set():
                delay = next_delay(delay, self.options.max_polling_interval_s, self.rng)

    async def drain(self, timeout_s: float) -> None:
        """Wait for running invocations after `stop`; unfinished messages reappear after their lease."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout_s)

    async def _wait_any(self, stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({*self._in_flight, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()

    def _receive(self) -> list[QueueMessage]:
        batch = self.options.batch_size
        try:
            return list(self._client.receive_messages(messages_per_page=batch, max_messages=batch,
                                                      visibility_timeout=int(self.lease_s)))
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._client.create_queue()
            return []

    async def _process(self, m: QueueMessage) -> None:
        max_count = self.options.max_dequeue_count
        if m.dequeue_count and m.dequeue_count > max_count:  # a host died holding it on its last attempt
            await asyncio.to_thread(self._to_poison, m, m.pop_receipt)
            return
        receipt = [m.pop_receipt]
        renewer = asyncio.create_task(self._renew(m, receipt))
        try:
            await self.invoker.invoke(self.spec, to_function_message(m, self.options.message_encoding))
            ok = True
        except Exception:  # the invoker logged it; the message's fate is decided below
            ok = False
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        try:
            if ok:
                await asyncio.to_thread(self._client.delete_message, m.id, receipt[0])
            elif (m.dequeue_count or 1) >= max_count:
                await asyncio.to_thread(self._to_poison, m, receipt[0])
            else:
                await asyncio.to_thread(self._release, m, receipt[0])
        except ResourceNotFoundError:
            log.warning("Message %s on '%s' lost its lease before completion; it will be delivered again",
                        m.id, self.queue_name)

    async def _renew(self, m: QueueMessage, receipt: list[Any]) -> None:
        """Renew the lease halfway through it; a failed renewal is tried again soon (the lease has time
        left), until the message is gone or its receipt stale."""
        wait = self.lease_s / 2
        while True:
            await asyncio.sleep(wait)
            try:
                updated = await asyncio.to_thread(self._client.update_message, m.id, receipt[0],
                                                  visibility_timeout=int(self.lease_s))
            except ResourceNotFoundError as e:
                log.warning("Message %s on '%s' lost its lease (%s)", m.id, self.queue_name, e)
                return
            except AzureError as e:
                wait = min(self.lease_s / 8, MAX_ERROR_WAIT_S)
                log.warning("Renewing the lease of message %s on '%s' failed (%s); retrying in %.1f s",
                            m.id, self.queue_name, e, wait)
                continue
            receipt[0] = updated.pop_receipt
            wait = self.lease_s / 2

    def _release(self, m: QueueMessage, pop_receipt: str) -> None:
        self._client.update_message(m.id, pop_receipt, visibility_timeout=int(self.options.visibility_timeout_s))

    def _to_poison(self, m: QueueMessage, pop_receipt: str) -> None:
        poison = f"{self.queue_name}-poison"
        log.warning("Message %s has been dequeued %s times from '%s'; moving it to '%s'",
                    m.id, m.dequeue_count, self.queue_name, poison)
        send_text(self._conn, poison, m.content, "none")  # the original text, as it was
        self._client.delete_message(m.id, pop_receipt)
