"""Job arrays and dependencies: the pure decisions, table by table."""

from __future__ import annotations

import pytest

from shared.decisions import arrays as a
from shared.decisions import dependencies as d
from shared.domain import job_links
from shared.domain.errors import ApiError
from shared.domain.keys import WorkspaceRef

# --- dependencies --------------------------------------------------------------------------------

S, E = d.SUCCEEDED, d.ENDED


@pytest.mark.parametrize(("deps", "kind", "job"), [
    ([], d.RELEASE, ""),
    ([("a", S, "queued")], d.WAIT, ""),
    ([("a", S, "running")], d.WAIT, ""),
    ([("a", S, "terminating")], d.WAIT, ""),
    ([("a", S, "succeeded")], d.RELEASE, ""),
    ([("a", S, "failed")], d.FAIL, "a"),
    ([("a", S, None)], d.FAIL, "a"),  # deleted before it succeeded
    ([("a", E, "running")], d.WAIT, ""),
    ([("a", E, "failed")], d.RELEASE, ""),
    ([("a", E, "succeeded")], d.RELEASE, ""),
    ([("a", E, None)], d.RELEASE, ""),  # deleted: it ended
    ([("a", S, "succeeded"), ("b", S, "running")], d.WAIT, ""),
    ([("a", S, "running"), ("b", S, "failed")], d.FAIL, "b"),  # fails at once, without waiting for a
    ([("a", S, "failed"), ("b", S, "failed")], d.FAIL, "a"),  # the first in the job's order is named
    ([("a", E, "failed"), ("b", S, "succeeded")], d.RELEASE, ""),
])
def test_dependency_verdict(deps: list[tuple[str, str, str | None]], kind: str, job: str) -> None:
    verdict = d.verdict([d.Dependency(name, condition, phase) for name, condition, phase in deps])
    assert (verdict.kind, verdict.job) == (kind, job)
    if kind == d.FAIL:
        assert f"'{job}'" in verdict.message


# --- arrays --------------------------------------------------------------------------------------

def state(count: int, k: int, created: int = 0, written: int | None = None,
          ended: dict[int, str] | None = None) -> a.ArrayState:
    return a.ArrayState(count, k, created, created if written is None else written, ended or {})


@pytest.mark.parametrize(("before", "children", "stopping", "may_create", "create", "ended", "start", "end"), [
    # a new array writes its first K children
    (state(20, 4), {}, False, True, (0, 1, 2, 3), {}, False, None),
    # nothing ended: no room
    (state(20, 4, 4), {0: "running", 1: "queued", 2: "queued", 3: "assigned"}, False, True, (), {}, True, None),
    # two ended: two more, in index order
    (state(20, 4, 4), {0: "succeeded", 1: "failed", 2: "running", 3: "queued"}, False, True, (4, 5),
     {0: "succeeded", 1: "failed"}, True, None),
    # decided but not written yet: written now (counted live all along)
    (state(20, 4, 4, written=2), {0: "running", 1: "running"}, False, True, (2, 3), {}, True, None),
    # written, then missing: deleted, which ends it as failed and makes room
    (state(20, 4, 4), {1: "running", 2: "running", 3: "running"}, False, True, (4,), {0: a.DELETED}, True, None),
    # waiting on dependencies (may not create): nothing is written
    (state(20, 4), {}, False, False, (), {}, False, None),
    # the last children end: the array ends, failed when any index did not succeed
    (state(3, 2, 3, ended={0: "succeeded"}), {1: "succeeded", 2: "succeeded"}, False, True, (),
     {0: "succeeded", 1: "succeeded", 2: "succeeded"}, True, "succeeded"),
    (state(3, 3, 3), {0: "succeeded", 1: "failed", 2: "succeeded"}, False, True, (),
     {0: "succeeded", 1: "failed", 2: "succeeded"}, True, "failed"),
    # stopping: nothing new; ends once no child is live; a decided child never written is cancelled
    (state(20, 4, 4, written=3), {0: "failed", 1: "terminating", 2: "failed"}, True, True, (),
     {0: "failed", 2: "failed", 3: a.CANCELLED}, True, None),
    (state(20, 4, 4), {0: "failed", 1: "failed", 2: "failed", 3: "succeeded"}, True, True, (),
     {0: "failed", 1: "failed", 2: "failed", 3: "succeeded"}, True, "failed"),
    (state(20, 4), {}, True, True, (), {}, False, "failed"),  # stopped before any child was decided
])
def test_array_advance(before: a.ArrayState, children: dict[int, str], stopping: bool, may_create: bool,
                      create: tuple[int, ...], ended: dict[int, str], start: bool, end: str | None) -> None:
    live = {i: children.get(i) for i in before.live()}
    step = a.advance(before, live, stopping, may_create)
    assert step.create == create
    assert dict(step.state.ended) == ended
    assert (step.start, step.end) == (start, end)
    assert len(step.state.live()) <= before.max_concurrent
    assert step.state.created == max([before.created, *[i + 1 for i in create]])


def test_array_never_has_more_than_k_live_whatever_ends_when() -> None:
    """Replay a whole array, ending children in a scrambled order: never more than K are live."""
    st, phases, order = state(20, 4), {}, []
    for tick in range(200):
        step = a.advance(st, {i: phases.get(i) for i in st.live()}, False, True)
        for i in step.create:
            phases[i] = "queued"
        st = replace_written(step.state)
        assert len(st.live()) <= 4
        live = st.live()
        if step.end:
            break
        victim = live[(tick * 7) % len(live)]
        phases[victim] = "failed" if victim == 13 else "succeeded"
        order.append(victim)
    assert step.end == "failed" and st.failed() == (13,)
    assert sorted(order) == list(range(20))


def replace_written(st: a.ArrayState) -> a.ArrayState:
    return a.ArrayState(st.count, st.max_concurrent, st.created, st.created, st.ended)


def test_array_state_round_trips_through_its_document() -> None:
    st = state(5, 2, 3, written=2, ended={1: "succeeded", 0: a.DELETED})
    assert a.ArrayState.from_dict(st.to_dict()) == st


# --- the body's rules -----------------------------------------------------------------------------

@pytest.mark.parametrize(("props", "target"), [
    ({"array": 3}, "properties.array"),
    ({"array": {}}, "properties.array.count"),
    ({"array": {"count": 0}}, "properties.array.count"),
    ({"array": {"count": 1001}}, "properties.array.count"),
    ({"array": {"count": True}}, "properties.array.count"),
    ({"array": {"count": "4"}}, "properties.array.count"),
    ({"array": {"count": 4, "maxConcurrent": 5}}, "properties.array.maxConcurrent"),
    ({"array": {"count": 4, "maxConcurrent": 0}}, "properties.array.maxConcurrent"),
    ({"array": {"count": 4, "size": 2}}, "properties.array.size"),
    ({"dependsOn": "a"}, "properties.dependsOn"),
    ({"dependsOn": [{"job": "a"}] * 21}, "properties.dependsOn"),
    ({"dependsOn": [{"job": "a"}, {"condition": "ended"}]}, "properties.dependsOn[1].job"),
    ({"dependsOn": [{"job": "a b"}]}, "properties.dependsOn[0].job"),
    ({"dependsOn": [{"job": "a", "condition": "failed"}]}, "properties.dependsOn[0].condition"),
    ({"dependsOn": ["a"]}, "properties.dependsOn[0]"),
])
def test_body_refusals_name_the_field(props: dict[str, object], target: str) -> None:
    with pytest.raises(ApiError) as e:
        job_links.validate({"properties": props})
    assert (e.value.status, e.value.target) == (400, target)


def test_body_defaults() -> None:
    assert job_links.validate({"properties": {"array": {"count": 5}, "dependsOn": [{"job": "a"}]}}) == {
        "array": {"count": 5, "maxConcurrent": 5}, "dependsOn": [{"job": "a", "condition": "succeeded"}]}
    assert job_links.validate({"properties": {"array": None}}) == {}


def test_dependency_names_resolve_within_the_workspace() -> None:
    ws = WorkspaceRef("00000000-0000-0000-0000-000000000000", "rg", "ws")
    job = ws.experiment("e").job("j")
    assert job_links.dependency_ref(job, "prep", 0) == ws.experiment("e").job("prep")
    other = f"{ws.arm_id}/experiments/other/jobs/prep"
    assert job_links.dependency_ref(job, other, 0) == ws.experiment("other").job("prep")
    with pytest.raises(ApiError) as e:
        job_links.dependency_ref(job, WorkspaceRef(ws.subscription, "rg", "elsewhere").arm_id +
                                 "/experiments/e/jobs/prep", 2)
    assert e.value.target == "properties.dependsOn[2].job"
    with pytest.raises(ApiError):
        job_links.dependency_ref(job, "J", 0)  # itself (names are case-insensitive)


def test_the_published_additions_agree_with_the_rules() -> None:
    import json
    from pathlib import Path

    import shared.domain.contract as contract

    doc = json.loads((Path(contract.__file__).parent / "job-links.json").read_text())["definitions"]
    assert doc["JobArray"]["properties"]["count"]["maximum"] == job_links.MAX_COUNT
    assert tuple(doc["JobDependency"]["properties"]["condition"]["enum"]) == job_links.CONDITIONS
    assert doc["JobLinksCreateProperties"]["properties"]["dependsOn"]["maxItems"] == job_links.MAX_DEPENDENCIES
    assert doc["JobLinksProperties"]["properties"]["waitingReason"]["enum"] == [job_links.WAITING_REASON]
