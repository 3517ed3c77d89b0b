"""The pure scheduler, table-driven: order, gangs, whole nodes, packing, head of line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.decisions.scheduler import (
    GPU_SLOTS,
    NodeView,
    PendingJob,
    SchedulingRequest,
    schedule,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def idle(*ids: str, slots: int = 1) -> list[NodeView]:
    return [NodeView(i, "idle", slots=slots) for i in ids]


def busy(node_id: str, job: str = "other", slots: int = 1, used: int = 1) -> NodeView:
    return NodeView(node_id, "running", slots=slots, used_slots=used, jobs=(job,))


def job(key: str, priority: str = "normal", at: int = 0, n: int = 1, slots: int = 1) -> PendingJob:
    return PendingJob(key, priority, T0 + timedelta(seconds=at), node_count=n, slots=slots)


def run(nodes: list[NodeView], pending: list[PendingJob], packing: str = "whole-node",
        ids: int | None = None) -> dict[str, tuple[str, ...]]:
    count = len(pending) if ids is None else ids
    reply = schedule(SchedulingRequest(nodes, pending, T0, [f"a{i}" for i in range(count)], packing))
    return {p.job_key: p.node_ids for p in reply.assignments}


CASES = [
    pytest.param(idle("n1"), [job("low", "low"), job("normal"), job("high", "high")], {"high": ("n1",)},
                 id="priority-high-first"),
    pytest.param(idle("n1", "n2"), [job("late", at=5), job("early", at=1)], {"early": ("n1",), "late": ("n2",)},
                 id="same-priority-by-submit-time"),
    pytest.param(idle("n1", "n2", "n3"), [job("h1", "high", at=9), job("n", at=0), job("h2", "high", at=10)],
                 {"h1": ("n1",), "h2": ("n2",), "n": ("n3",)}, id="high-before-older-normal"),
    pytest.param(idle("n1", "n2"), [job("gang", n=3)], {}, id="gang-all-or-nothing"),
    pytest.param(idle("n1", "n2", "n3"), [job("gang", n=3)], {"gang": ("n1", "n2", "n3")}, id="gang-fits"),
    pytest.param(idle("n1", "n2"), [job("a"), job("b", at=1), job("c", at=2)], {"a": ("n1",), "b": ("n2",)},
                 id="whole-node-one-job-each"),
    pytest.param([NodeView("s", "starting"), NodeView("p", "preparing"), NodeView("l", "leaving"),
                  NodeView("u", "unusable"), NodeView("x", "lost"), busy("r")] + idle("i"),
                 [job("a"), job("b", at=1)], {"a": ("i",)}, id="only-idle-nodes"),
    pytest.param([NodeView("n1", "idle", jobs=("stale",))], [job("a")], {}, id="idle-row-holding-a-job-is-not-free"),
    pytest.param(idle("n1", "n2", "n3") + [busy("n4")], [job("big", "high", n=4), job("small", "low")], {},
                 id="blocked-high-reserves-free-nodes"),
    pytest.param(idle("n1", "n2"), [job("huge", "high", n=5), job("small", "low")], {"small": ("n1",)},
                 id="too-large-for-cluster-does-not-block"),
    pytest.param(idle("n1", "n2") + [busy("n3")], [job("big", n=2), job("b2", n=2, at=1), job("s", at=2)],
                 {"big": ("n1", "n2")}, id="fifo-within-priority"),
    pytest.param(idle("n1", "n2", "n3") + [busy("n4")], [job("wide", "high", n=2, at=0), job("one", at=1)],
                 {"wide": ("n1", "n2"), "one": ("n3",)}, id="fits-then-next"),
    pytest.param(idle("n1", "n2", "n3"), [job("a"), job("a", at=1)], {"a": ("n1",)}, id="no-job-twice"),
    pytest.param(idle("n1", "n2", slots=8), [job("a"), job("b", at=1), job("c", at=2)],
                 {"a": ("n1",), "b": ("n2",)}, id="whole-node-ignores-slots"),
]


@pytest.mark.parametrize(("nodes", "pending", "expected"), CASES)
def test_whole_node_scheduling(nodes: list[NodeView], pending: list[PendingJob],
                               expected: dict[str, tuple[str, ...]]) -> None:
    assert run(nodes, pending) == expected


PACKED = [
    pytest.param(idle("g1", slots=4), [job("a", slots=1), job("b", at=1, slots=2), job("c", at=2, slots=2)],
                 {"a": ("g1",), "b": ("g1",)}, id="slots-pack-one-node"),
    pytest.param(idle("g1", "g2", slots=2) + [busy("g3", slots=2, used=1)], [job("one", slots=1)],
                 {"one": ("g3",)}, id="best-fit-fullest-node-first"),
    pytest.param([busy("g1", slots=4, used=3), *idle("g2", slots=4)], [job("big", "high", slots=4, n=2),
                                                                     job("small", "low", slots=1)],
                 {}, id="packed-blocked-job-reserves"),
    pytest.param([NodeView("g1", "leaving", slots=8)], [job("a")], {}, id="packed-leaving-not-free"),
]


@pytest.mark.parametrize(("nodes", "pending", "expected"), PACKED)
def test_gpu_slot_packing(nodes: list[NodeView], pending: list[PendingJob],
                          expected: dict[str, tuple[str, ...]]) -> None:
    assert run(nodes, pending, GPU_SLOTS) == expected


def test_no_node_is_given_twice_and_ids_are_used_in_order() -> None:
    nodes = idle(*(f"n{i}" for i in range(10)))
    pending = [job(f"j{i}", at=i, n=1 + i % 3) for i in range(12)]
    reply = schedule(SchedulingRequest(nodes, pending, T0, [f"id{i}" for i in range(12)]))
    used = [n for p in reply.assignments for n in p.node_ids]
    assert len(used) == len(set(used)) <= 10
    assert [p.assignment_id for p in reply.assignments] == [f"id{i}" for i in range(len(reply.assignments))]
    assert all(len(p.node_ids) == next(j.node_count for j in pending if j.job_key == p.job_key)
               for p in reply.assignments)


def test_waiting_reasons_and_reservation() -> None:
    nodes = idle("n1", "n2") + [busy("n3"), NodeView("n4", "starting")]
    pending = [job("big", "high", n=3), job("next", n=2, at=1), job("huge", "low", n=9)]
    reply = schedule(SchedulingRequest(nodes, pending, T0, ["x", "y", "z"]))
    assert reply.assignments == []
    waits = {w.job_key: w for w in reply.waiting}
    assert waits["big"].reason == "no-free-nodes" and set(waits["big"].reserved) == {"n1", "n2", "n3"}
    assert waits["next"].reason == "behind-reservation"
    assert waits["huge"].reason == "too-large"


def test_runs_out_of_ids_assigns_no_more() -> None:
    assert run(idle("n1", "n2"), [job("a"), job("b", at=1)], ids=1) == {"a": ("n1",)}


def test_unknown_packing_is_refused() -> None:
    with pytest.raises(ValueError):
        schedule(SchedulingRequest([], [], T0, [], packing="spread"))
