"""Job arrays: which child jobs of an array parent to write next, and when the parent ends. Pure.

An array job of N tasks is a parent job whose tasks are child jobs 0..N-1, created in index order
with at most K of them not ended at once. The parent keeps its bookkeeping (`ArrayState`):
`created` children were decided (a child is counted live from the moment it is decided, before it
is written, so no interleaving of advances ever lets more than K be live), `written` of them are
known to have been written, and `ended` records how each finished child ended. A decided child
that is missing was not written yet (write it) unless it is known to have been written: then it
was deleted, which ends it as failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

SUCCEEDED, FAILED = "succeeded", "failed"
DELETED = "deleted"  # the child was deleted before it ended
CANCELLED = "cancelled"  # decided but never written: the parent was stopped first
LEFT_QUEUE = frozenset({"assigned", "running", "terminating", SUCCEEDED, FAILED})


@dataclass(frozen=True)
class ArrayState:
    count: int
    max_concurrent: int
    created: int = 0
    written: int = 0
    ended: Mapping[int, str] = field(default_factory=dict)

    def live(self) -> list[int]:
        return [i for i in range(self.created) if i not in self.ended]

    def failed(self) -> tuple[int, ...]:
        return tuple(sorted(i for i, how in self.ended.items() if how != SUCCEEDED))

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "maxConcurrent": self.max_concurrent, "created": self.created,
                "written": self.written, "ended": {str(i): how for i, how in sorted(self.ended.items())}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArrayState:
        return cls(int(d["count"]), int(d["maxConcurrent"]), int(d.get("created") or 0), int(d.get("written") or 0),
                   {int(i): str(how) for i, how in (d.get("ended") or {}).items()})


@dataclass(frozen=True)
class ArrayStep:
    state: ArrayState  # the bookkeeping after this step
    create: tuple[int, ...] = ()  # children to write now (new ones, and decided ones still missing)
    start: bool = False  # a child left the queue: the parent runs
    end: str | None = None  # SUCCEEDED | FAILED: nothing of the array is left to run


def advance(state: ArrayState, children: Mapping[int, str | None], stopping: bool, may_create: bool) -> ArrayStep:
    """One step of an array parent. `children`: the phase of each live child (None: no such job);
    `stopping`: the parent is being terminated or deleted (nothing new is written, missing children
    are cancelled); `may_create`: new children may be decided now."""
    ended = dict(state.ended)
    missing: list[int] = []
    for i in state.live():
        phase = children.get(i)
        if phase in (SUCCEEDED, FAILED):
            ended[i] = phase
        elif phase is None and (i < state.written or stopping):
            ended[i] = DELETED if i < state.written else CANCELLED
        elif phase is None:
            missing.append(i)
    start = any(children.get(i) in LEFT_QUEUE for i in state.live()) or any(
        how in (SUCCEEDED, FAILED) for how in ended.values())
    live = state.created - len(ended)
    new: list[int] = []
    if may_create and not stopping:
        room = max(0, state.max_concurrent - live)
        new = list(range(state.created, min(state.count, state.created + room)))
    after = replace(state, created=state.created + len(new), ended=ended)
    end = None
    if stopping and not after.live():
        end = FAILED
    elif len(ended) == state.count:
        end = FAILED if after.failed() else SUCCEEDED
    return ArrayStep(after, tuple(missing + new), start, end)


def child_name(parent: str, index: int) -> str:
    return f"{parent}-{index}"


def child_name_length(parent: str, count: int) -> int:
    """The length of the longest child name of an array of `count` tasks."""
    return len(child_name(parent, count - 1))
