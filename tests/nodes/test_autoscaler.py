"""Table tests of the pure cluster size decision."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from shared.decisions.autoscaler import (
    REQUEUE,
    RESIZING,
    STEADY,
    TERMINATE,
    WAIT,
    InstanceView,
    NodeView,
    ScaleInput,
    ScalePolicy,
    decide,
    demand,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 300.0


def auto(lo: int, hi: int, initial: int = 0) -> ScalePolicy:
    return ScalePolicy(minimum=lo, maximum=hi, initial=initial)


def manual(target: int, option: str = REQUEUE) -> ScalePolicy:
    return ScalePolicy(manual_target=target, deallocation=option)


def idle(node_id: str, for_s: float) -> NodeView:
    return NodeView(node_id, "idle", idle_since=NOW - timedelta(seconds=for_s),
                    state_since=NOW - timedelta(seconds=for_s))


def busy(node_id: str, job: str = "") -> NodeView:
    return NodeView(node_id, "running", job_key=job or f"job-{node_id}", assignment_id=f"a-{node_id}",
                    state_since=NOW - timedelta(seconds=1000))


def state(node_id: str, s: str, for_s: float = 10) -> NodeView:
    return NodeView(node_id, s, state_since=NOW - timedelta(seconds=for_s))


def run(policy: ScalePolicy, nodes: list[NodeView], pending: list[int] = (),
        instances: list[InstanceView] | None = None, now: datetime = NOW, first: bool = False):
    if instances is None:
        instances = [InstanceView(n.node_id, "running") for n in nodes]
    return decide(ScaleInput(policy, nodes, instances, list(pending), now, TIMEOUT, first_reconcile=first))


@pytest.mark.parametrize(("name", "policy", "nodes", "pending", "target", "remove", "alloc"), [
    ("zero nodes, queued jobs: scale up in one tick", auto(0, 4), [], [1, 1], 2, [], RESIZING),
    ("demand above max is clamped", auto(0, 4), [], [3, 2, 1], 4, [], RESIZING),
    ("a gang larger than max is not demand", auto(0, 4), [], [5], 0, [], STEADY),
    ("minimum kept with no demand", auto(2, 4), [], [], 2, [], RESIZING),
    ("busy nodes plus demand", auto(0, 5), [busy("a"), busy("b")], [2], 4, [], RESIZING),
    ("idle just below the timeout stays", auto(0, 4), [idle("a", TIMEOUT - 1)], [], 1, [], STEADY),
    ("idle just above the timeout goes", auto(0, 4), [idle("a", TIMEOUT + 1)], [], 0, ["a"], RESIZING),
    ("idle past timeout kept for minimum", auto(1, 4), [idle("a", 999), idle("b", 998)], [], 1, ["a"], RESIZING),
    ("busy nodes never removed with no demand", auto(0, 4), [busy("a"), busy("b")], [], 2, [], STEADY),
    ("idle nodes serve pending demand", auto(0, 4), [idle("a", 999)], [1], 1, [], STEADY),
    ("unusable long enough is replaced", auto(0, 2), [state("a", "unusable", 999)], [1], 1, ["a"], RESIZING),
    ("manual up", manual(2), [], [], 2, [], RESIZING),
    ("manual steady", manual(2), [idle("a", 5), idle("b", 5)], [], 2, [], STEADY),
    ("manual down takes the longest idle", manual(1), [idle("a", 5), idle("b", 50), idle("c", 500)], [],
     1, ["b", "c"], RESIZING),
    ("manual down takes unusable and starting before idle", manual(1),
     [idle("a", 500), state("b", "unusable"), state("c", "starting")], [], 1, ["b", "c"], RESIZING),
    ("manual down to 0 keeps no one", manual(0), [idle("a", 5)], [7], 0, ["a"], RESIZING),
])
def test_table(name, policy, nodes, pending, target, remove, alloc):
    d = run(policy, nodes, pending)
    assert d.provider_target == target, name
    assert d.remove == remove, name
    assert d.allocation_state == alloc, name


def test_demand_counts_only_gangs_that_fit():
    assert demand([1, 2, 8, 0], 4) == 3


def test_nodes_still_starting_are_not_scaled_up_twice():
    starting = [state("a", "starting"), state("b", "preparing")]
    d = run(auto(0, 4), starting, pending=[2])
    assert d.provider_target == 2 and d.remove == []
    # Instances the provider already reports but that have no row yet count as well.
    d = run(auto(0, 4), [], pending=[2], instances=[InstanceView("x", "creating"), InstanceView("y", "running")])
    assert d.provider_target == 2 and d.adopt == ["x", "y"]


@pytest.mark.parametrize("late_by", [0, 60, 3600, 86400])
def test_late_or_doubled_tick_decides_the_same(late_by):
    nodes = [busy("a"), state("b", "starting")]
    first = run(auto(0, 4), nodes, pending=[1], now=NOW + timedelta(seconds=late_by))
    again = run(auto(0, 4), nodes, pending=[1], now=NOW + timedelta(seconds=late_by))
    assert first == again
    assert first.provider_target == 2  # b is on its way: no extra start however late the tick
    assert first.remove == []


def test_late_tick_removes_only_idle_past_timeout():
    nodes = [idle("a", 10), busy("b")]
    d = run(auto(0, 4), nodes, now=NOW + timedelta(seconds=TIMEOUT + 100))
    assert d.remove == ["a"] and d.provider_target == 1


def test_initial_node_count_applies_only_on_first_reconcile():
    assert run(auto(0, 4, initial=3), [], first=True).provider_target == 3
    assert run(auto(0, 4, initial=9), [], first=True).provider_target == 4
    assert run(auto(0, 4, initial=3), [], first=False).provider_target == 0


@pytest.mark.parametrize(("option", "removed", "action"), [
    (REQUEUE, ["i", "r2"], REQUEUE), (TERMINATE, ["i", "r2"], TERMINATE), (WAIT, ["i"], WAIT)])
def test_manual_lowering_deallocation_options(option, removed, action):
    d = run(manual(1, option), [idle("i", 5), busy("r1"), busy("r2")])
    assert d.remove == removed
    drained = {x.node_id: x for x in d.drain}
    assert set(drained) == {"i", "r2"}
    assert drained["r2"].action == action and drained["r2"].job_key == "job-r2"
    assert drained["i"].action == ""
    assert d.provider_target == (1 if option != WAIT else 2)


def test_waiting_leaving_node_is_removed_once_its_job_ended():
    waiting = NodeView("w", "leaving", job_key="job-w", leaving_reason="scale-down:waitforjobcompletion")
    d = run(manual(1), [idle("a", 5), waiting])
    assert d.remove == [] and d.provider_target == 2 and d.allocation_state == RESIZING
    done = NodeView("w", "leaving", leaving_reason="scale-down:waitforjobcompletion")
    d = run(manual(1), [idle("a", 5), done])
    assert d.remove == ["w"] and d.provider_target == 1


def test_gone_failed_and_start_failed_instances():
    rows = [idle("gone", 5), state("s", "starting"), idle("dead", 5)]
    instances = [InstanceView("s", "failed"), InstanceView("dead", "failed"), InstanceView("orphan", "failed")]
    d = run(manual(2), rows, instances=instances)
    assert [g.node_id for g in d.gone] == ["gone"]
    assert d.start_failed == ["s"]
    assert [n.node_id for n in d.lost] == ["dead"]  # failed after it joined: lost at once, not at the heartbeat timeout
    assert d.remove == ["dead", "orphan"]  # and a dead instance nobody knows
    # s stays (unusable, counted); the dead idle node is replaced: one new node is started.
    assert d.provider_target == 1


NODE_KINDS = [idle("i1", 10), idle("i2", 400), busy("r1"), busy("r2"), state("s", "starting"),
              state("p", "preparing"), state("u", "unusable", 400)]


@pytest.mark.parametrize("policy", [auto(0, 3), auto(1, 1), auto(0, 0), manual(0, WAIT), manual(2, WAIT)])
def test_never_a_busy_node_removed(policy):
    for size in range(len(NODE_KINDS) + 1):
        for nodes in itertools.combinations(NODE_KINDS, size):
            for pending in ([], [1], [3]):
                d = run(policy, list(nodes), pending)
                running = {n.node_id for n in nodes if n.state == "running"}
                assert not running & set(d.remove), (policy, nodes, pending)


def test_policy_from_properties():
    assert ScalePolicy.from_properties({"scaleSettings": {"manual": {"targetNodeCount": 3}}}) == manual(3)
    p = ScalePolicy.from_properties({"scaleSettings": {"manual": {"targetNodeCount": 1,
                                                                  "nodeDeallocationOption": "waitforjobcompletion"}}})
    assert p.deallocation == WAIT
    p = ScalePolicy.from_properties({"scaleSettings": {"autoScale": {"minimumNodeCount": 1, "maximumNodeCount": 5,
                                                                     "initialNodeCount": 2}}})
    assert (p.is_manual, p.minimum, p.maximum, p.initial) == (False, 1, 5, 2)
