"""Per-item guards of timer loops: one bad entity never stalls the others.

A tick runs its step for every item it found; an item whose step raises is set aside and the loop
goes on. Once every item had its turn the failures are raised together (an ExceptionGroup naming
the items), so the host reports them and the next tick tries those items again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ItemFailed(Exception):
    """The step of one item of a tick failed (its cause is the original error)."""


class Guard:
    """Runs the steps of a tick's items one by one, setting failures aside; `check()` raises them."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures: list[Exception] = []

    def run(self, item: object, step: Callable[..., R], *args: Any) -> R | None:
        """`step(*args)` for `item`; None when it raised (the failure is kept for `check`)."""
        try:
            return step(*args)
        except Exception as e:  # noqa: BLE001 - raised by check(), after the other items had their turn
            failure = ItemFailed(f"{self.what} {item!r}: {type(e).__name__}: {e}")
            failure.__cause__ = e
            self.failures.append(failure)
            return None

    def check(self) -> None:
        if self.failures:
            raise ExceptionGroup(f"{self.what}: {len(self.failures)} of the items failed", self.failures)


def each(items: Iterable[T], step: Callable[[T], R], what: str) -> list[R]:
    """`step` of every item, in order; the results of the items that succeeded. Raises an
    ExceptionGroup of ItemFailed (one per failed item) after all items were tried."""
    guard = Guard(what)
    results: list[R] = []
    for item in items:
        guard.run(item, _collect, results, step, item)
    guard.check()
    return results


def _collect(results: list[R], step: Callable[[T], R], item: T) -> None:
    results.append(step(item))
