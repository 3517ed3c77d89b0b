"""Per-item guards of timer loops: one bad entity never stalls the others.

A tick runs its step for every item it found; an item whose step raises is set aside and the loop
goes on. Once every item had its turn the failures are raised together (an ExceptionGroup naming
the items), so the host reports them and the next tick tries those items again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ItemFailed(Exception):
    """The step of one item of a tick failed (its cause is the original error)."""


def each(items: Iterable[T], step: Callable[[T], R], what: str) -> list[R]:
    """`step` of every item, in order; the results of the items that succeeded. Raises an
    ExceptionGroup of ItemFailed (one per failed item) after all items were tried."""
    results: list[R] = []
    failures: list[Exception] = []
    for item in items:
        try:
            results.append(step(item))
        except Exception as e:  # noqa: BLE001 - raised below, after the other items had their turn
            failure = ItemFailed(f"{what} {item!r}: {type(e).__name__}: {e}")
            failure.__cause__ = e
            failures.append(failure)
    if failures:
        raise ExceptionGroup(f"{what}: {len(failures)} of the items failed", failures)
    return results
