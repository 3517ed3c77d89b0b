"""Waiting for state in tests: poll a predicate until it holds or a deadline passes (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# A deadline only decides how soon a failure is reported, never whether a correct system passes: on a
# loaded 2-core host every step can take many times its idle time, so no wait gives up sooner than this.
MIN_DEADLINE_S = 300.0


class _Deadline:
    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = max(timeout, MIN_DEADLINE_S)
        self.at = time.monotonic() + self.timeout
        self.what = what

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise AssertionError(f"timed out after {self.timeout:g} s waiting for {self.what}")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
               interval: float = 0.05) -> T:
    """The predicate's first truthy value; AssertionError when the deadline (at least MIN_DEADLINE_S)
    passes first."""
    deadline = _Deadline(timeout, what)
    while not (value := predicate()):
        deadline.check()
        time.sleep(interval)
    return value


async def wait_until_async(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
                           interval: float = 0.05) -> T:
    """`wait_until` inside an event loop: the loop keeps running while it waits."""
    deadline = _Deadline(timeout, what)
    while not (value := predicate()):
        deadline.check()
        await asyncio.sleep(interval)
    return value
