"""Retrying storage calls of the node agent: which errors are transient, and the backoff between tries.

A node must outlive storage outages: everything it has to tell the service (events, logs, outputs)
is retried with capped exponential backoff until it succeeds or the agent gives up on purpose.
Permanent errors (bad request, forbidden, not found) are raised at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}

#: Per-call option for the storage SDK: no retries inside the SDK (its storage default waits 15 s,
#: then 18 s, ...); the agent's own loops retry, on their own schedule, and keep their state.
NO_SDK_RETRY: dict[str, int] = {"retry_total": 0}


class GaveUp(Exception):
    """The caller asked to stop retrying (the agent is shutting down) before the call succeeded."""


class TransientError(Exception):
    """A call outside the storage SDK (IMDS, the node credentials API) that may succeed if tried again."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TransientError | ServiceRequestError | ServiceResponseError | ConnectionError | TimeoutError):
        return True
    if isinstance(error, HttpResponseError):
        return error.status_code is None or error.status_code in TRANSIENT_STATUS
    return False


class Backoff:
    """Capped exponential delays with jitter: 0.25 s, 0.5 s, ... up to `cap`."""

    def __init__(self, initial: float = 0.25, cap: float = 8.0) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0


def with_retries(call: Callable[[], T], what: str, give_up: threading.Event | None = None,
                 deadline_s: float | None = None, cap: float = 8.0) -> T:
    """Call until it succeeds. Transient errors are retried; a permanent one is raised. Raises
    `GaveUp` when `give_up` is set or `deadline_s` has passed while the call keeps failing."""
    backoff = Backoff(cap=cap)
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            delay = backoff.next_delay()
            log.warning("%s failed (%s: %s); retrying in %.1f s", what, type(error).__name__, error, delay)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise GaveUp(f"{what}: storage unreachable: {error}") from error
            if give_up is not None:
                if give_up.wait(delay):
                    raise GaveUp(f"{what}: abandoned") from error
            else:
                time.sleep(delay)
