"""The scheduler decides exactly as the plain statement of its policy (`reference_scheduler`) for any
cluster and queue: random nodes in every state, busy GPUs, gangs, priorities, ties in submit time,
duplicate keys, too few assignment ids, both packings. Derandomised: the same examples on every run.
Also: where `room_now` says no node could take a job, no packing places one."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.decisions.gpu_slots import PACKINGS
from shared.decisions.scheduler import NodeView, PendingJob, SchedulingRequest, room_now, schedule
from tests.scheduling.reference_scheduler import reference_schedule

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STATES = ("idle", "idle", "running", "starting", "preparing", "leaving", "unusable")


@st.composite
def node_views(draw: st.DrawFn, index: int) -> NodeView:
    state = draw(st.sampled_from(STATES))
    gpus = draw(st.sampled_from((0, 0, 1, 2, 4)))
    slots = gpus or draw(st.integers(1, 4))
    busy = draw(st.frozensets(st.integers(0, max(gpus - 1, 0)), max_size=gpus)) if gpus else frozenset()
    used = draw(st.integers(0, slots))
    jobs = tuple(f"r{index}-{k}" for k in range(draw(st.integers(0, 2)))) if state in ("running", "idle") else ()
    return NodeView(f"n{draw(st.integers(0, 30)):02d}", state, slots=slots, used_slots=used, jobs=jobs, gpus=gpus,
                    busy_gpus=busy)


@st.composite
def requests(draw: st.DrawFn) -> SchedulingRequest:
    views = [draw(node_views(i)) for i in range(draw(st.integers(0, 14)))]
    unique = list({v.node_id: v for v in views}.values())
    pending = [PendingJob(f"j{draw(st.integers(0, 40)):02d}", draw(st.sampled_from(("high", "normal", "low", "odd"))),
                          T0 + timedelta(seconds=draw(st.integers(0, 5))), node_count=draw(st.integers(0, 6)),
                          slots=draw(st.integers(0, 5)))
               for _ in range(draw(st.integers(0, 25)))]
    ids = [f"a{i}" for i in range(draw(st.integers(0, 25)))]
    return SchedulingRequest(unique, pending, T0, ids, draw(st.sampled_from(PACKINGS)))


@settings(max_examples=1500, derandomize=True, deadline=None, database=None)
@given(requests())
def test_the_scheduler_decides_as_the_plain_policy(request: SchedulingRequest) -> None:
    assert schedule(request) == reference_schedule(request)


@settings(max_examples=1500, derandomize=True, deadline=None, database=None)
@given(requests())
def test_no_room_now_means_no_placement(request: SchedulingRequest) -> None:
    small = dataclasses.replace(request, pending=[PendingJob("small", "high", T0)], new_ids=["a-small"])
    for packing in PACKINGS:
        placed = schedule(dataclasses.replace(request, packing=packing)).assignments
        if not room_now(request.nodes, packing):
            assert placed == []
        else:  # where it says there is room, a lone one-slot, one-node job is placed
            assert schedule(dataclasses.replace(small, packing=packing)).assignments
    assert room_now(request.nodes) == any(room_now(request.nodes, packing) for packing in PACKINGS)
