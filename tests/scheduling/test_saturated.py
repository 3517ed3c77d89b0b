"""`saturated`: after a decision on the first pending jobs, could a later one still be placed? If not,
a pass need not read the rest of the pending index. Table-driven on the pure scheduler, plus a pass
against real Azurite whose first page of pending jobs cannot use the free node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.decisions.scheduler import (
    GPU_SLOTS,
    WHOLE_NODE,
    NodeView,
    PendingJob,
    SchedulingRequest,
    saturated,
    schedule,
)
from shared.services import scheduling
from tests.scheduling.conftest import T0 as WORLD_T0
from tests.scheduling.conftest import World

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def job(key: str, at: int = 0, n: int = 1, slots: int = 1) -> PendingJob:
    return PendingJob(key, "normal", T0 + timedelta(seconds=at), node_count=n, slots=slots)


def idle(node_id: str, slots: int = 1) -> NodeView:
    return NodeView(node_id, "idle", slots=slots)


def busy(node_id: str, slots: int = 1, used: int = 1) -> NodeView:
    return NodeView(node_id, "running", slots=slots, used_slots=used, jobs=("other",))


CASES = [
    pytest.param([idle("n1")], [job("a")], WHOLE_NODE, True, id="the one free node is taken"),
    pytest.param([idle("n1"), idle("n2")], [job("a")], WHOLE_NODE, False, id="a free node is left"),
    pytest.param([busy("n1"), busy("n2")], [job("a")], WHOLE_NODE, True, id="all busy: the job waits, holding both"),
    pytest.param([busy("n1"), busy("n2")], [], WHOLE_NODE, True, id="all busy, nothing read"),
    pytest.param([idle("n1")], [], WHOLE_NODE, False, id="free node, nothing read yet"),
    pytest.param([idle("n1"), NodeView("n2", "leaving")], [job("a")], WHOLE_NODE, True,
                 id="leaving nodes take nothing"),
    pytest.param([idle("n1")], [job("big", n=3)], WHOLE_NODE, False,
                 id="a too-large job holds nothing: a later small job could run"),
    pytest.param([idle("n1"), busy("n2")], [job("gang", n=2)], WHOLE_NODE, True,
                 id="a blocked gang holds the free node"),
    pytest.param([idle("g1", slots=4)], [job("a", slots=2)], GPU_SLOTS, False, id="slots left on a packed node"),
    pytest.param([idle("g1", slots=4)], [job("a", slots=4)], GPU_SLOTS, True, id="every slot taken"),
    pytest.param([busy("g1", slots=4, used=1)], [job("a", slots=4)], GPU_SLOTS, True,
                 id="a blocked job holds the node with free slots"),
]


@pytest.mark.parametrize(("nodes", "pending", "packing", "expected"), CASES)
def test_saturated(nodes: list[NodeView], pending: list[PendingJob], packing: str, expected: bool) -> None:
    request = SchedulingRequest(nodes, pending, T0, [f"a{i}" for i in range(len(pending))], packing)
    assert saturated(request, schedule(request)) is expected


def test_a_pass_reads_further_pages_when_the_first_cannot_use_a_free_node(world: World) -> None:
    world.cluster_doc()
    n1 = world.node("n1")
    gangs = [world.submit(f"gang-{i:03d}", node_count=2, at=i)  # more than a page, none fits one node
             for i in range(scheduling.PENDING_PAGE + 3)]
    small = world.submit("small", at=1000)
    result = scheduling.run_pass(world.settings, world.key, WORLD_T0)
    assert [p.job_key for p in result.assigned] == [small.key]
    assert world.node_row(n1)["jobKey"] == small.key
    # Its decision read every page: all the gangs wait (and the whole decision committed, it read no more).
    assert {w.job_key for w in result.waiting} == {g.key for g in gangs}
