"""One pass at a time per cluster in a process: requests that arrive while a pass runs join it (it runs
once more); a task's end is followed by a pass in the same invocation."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest

from shared.adapters import storage
from shared.domain.messages import Assignment
from shared.services import scheduling, task_events
from tests.scheduling.conftest import T0, World, wait_until

T1 = T0 + timedelta(seconds=10)


def _take_kicks(world: World) -> int:
    """Take this world's kicks off the shared queue (others peek it); how many there were."""
    queues = world.port.queues
    others, own = [], 0
    while batch := queues.receive(storage.Q_KICKS, count=32, visibility_timeout=30):
        for message in batch:
            if json.loads(message.content) == {"cluster": world.key}:
                queues.delete(storage.Q_KICKS, message)
                own += 1
            else:
                others.append(message)
    for message in others:  # visible again at once, as they were
        queues.release(storage.Q_KICKS, message)
    return own


@pytest.fixture(autouse=True)
def _own_kicks_removed(world: World) -> Iterator[None]:
    yield
    _take_kicks(world)


def _gated_clock(gate: threading.Event, calls: list[datetime], then: Callable[[int], datetime]
                 ) -> Callable[[], datetime]:
    """A clock whose first reading waits for `gate` (the pass is 'running' meanwhile)."""
    def clock() -> datetime:
        calls.append(T0)
        if len(calls) == 1:
            assert gate.wait(30)
        return then(len(calls))
    return clock


def _run_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except Exception as error:  # handed to the test thread
            out["error"] = error
    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def test_a_request_during_a_pass_joins_it_and_the_pass_runs_again(world: World) -> None:
    world.cluster_doc()
    n1, n2 = world.node("n1"), world.node("n2")
    first = world.submit("first")
    gate, calls = threading.Event(), []
    clock = _gated_clock(gate, calls, lambda _: T0)
    thread, out = _run_in_thread(lambda: scheduling.run_pass_coalesced(world.settings, world.key, clock))
    wait_until(lambda: calls, 10, "the pass to start")

    second = world.submit("second", at=1)  # arrives while the pass runs; its kick joins the pass
    assert scheduling.run_pass_coalesced(world.settings, world.key, lambda: T0) is None
    gate.set()
    thread.join(30)

    assert "error" not in out and len(calls) == 2  # ran again for the joined request
    placed = {world.asg(first).node_ids[0], world.asg(second).node_ids[0]}  # type: ignore[union-attr]
    assert placed == {n1, n2}
    assert world.internal(first)["phase"] == world.internal(second)["phase"] == "assigned"
    # Nothing is left running: the next request runs a pass of its own.
    assert scheduling.run_pass_coalesced(world.settings, world.key, lambda: T0) is not None


def test_a_failing_pass_queues_a_kick_for_the_request_that_joined_it(world: World) -> None:
    world.cluster_doc()
    world.node("n1")
    gate, calls = threading.Event(), []

    def then(call: int) -> datetime:
        if call == 2:
            raise RuntimeError("storage went away")
        return T0
    clock = _gated_clock(gate, calls, then)
    thread, out = _run_in_thread(lambda: scheduling.run_pass_coalesced(world.settings, world.key, clock))
    wait_until(lambda: calls, 10, "the pass to start")
    assert scheduling.run_pass_coalesced(world.settings, world.key, lambda: T0) is None
    gate.set()
    thread.join(30)

    assert isinstance(out.get("error"), RuntimeError)
    queues = world.port.queues

    def kicked() -> bool:
        for message in queues.receive(storage.Q_KICKS, count=32, visibility_timeout=1):
            if json.loads(message.content) == {"cluster": world.key}:
                queues.delete(storage.Q_KICKS, message)
                return True
        return False
    wait_until(kicked, 10, "a kick for the joined request")
    # The failed pass left nothing behind: a new request runs.
    assert scheduling.run_pass_coalesced(world.settings, world.key, lambda: T0) is not None


@pytest.mark.parametrize("with_clock", [True, False])
def test_task_end_runs_a_pass_in_the_same_invocation(world: World, with_clock: bool) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    first, second = world.submit("first"), world.submit("second", at=1)
    scheduling.run_pass(world.settings, world.key, T0)
    (assignment,) = world.messages(n1)
    assert isinstance(assignment, Assignment) and assignment.job_key == first.key

    event = world.event("task-exited", n1, first, assignment.assignment_id, exit_code=0, at=T1)
    clock = (lambda: T1) if with_clock else None
    _take_kicks(world)
    assert task_events.handle_task_event(world.settings, event, T1, clock=clock) == "succeeded"
    # The release kicks the cluster only when no pass follows in the same invocation.
    assert _take_kicks(world) == (0 if with_clock else 1)

    if with_clock:  # the freed node took the next job at once
        (nxt,) = world.messages(n1)
        assert isinstance(nxt, Assignment) and nxt.job_key == second.key
        assert world.internal(second)["phase"] == "assigned"
        # A redelivered (now stale) end is harmless: its pass finds nothing to do.
        assert task_events.handle_task_event(world.settings, event, T1, clock=clock) == "stale"
        assert world.messages(n1) == []
    else:  # without a clock the kick queued by the release does it later
        assert world.messages(n1) == []
        assert world.internal(second)["phase"] == "queued"
