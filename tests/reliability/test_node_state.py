"""The node state machine guards every write of a node row: the fields that give a node work or
move it come from one checked transition, so no leaving, lost or unusable node is ever given a job."""

from __future__ import annotations

import json

import pytest

from shared.domain.states import NODE_TRANSITIONS, IllegalTransition, NodeState
from shared.services import node_state
from tests.scheduling.conftest import T0


def row(state: str, **fields: object) -> dict[str, object]:
    return {**node_state.new_row_fields(state, T0), "RowKey": "node|n1", **fields}


@pytest.mark.parametrize("state", [NodeState.LEAVING, NodeState.LOST, NodeState.UNUSABLE, NodeState.STARTING,
                                   NodeState.PREPARING])
def test_only_an_idle_or_running_node_can_be_given_a_job(state: str) -> None:
    with pytest.raises(IllegalTransition):
        node_state.take_fields(row(state), "job", "asg", 1, T0)


def test_every_move_is_checked_and_recorded() -> None:
    taken = node_state.take_fields(row(NodeState.IDLE), "job", "asg", 1, T0)
    assert taken["state"] == NodeState.RUNNING and taken["jobKey"] == "job"
    assert json.loads(taken["history"])[-1] == {"from": "idle", "to": "running", "at": T0.isoformat(),
                                                "reason": "assigned job job"}
    freed = node_state.free_fields({**row(NodeState.RUNNING), **taken}, "job", "asg", T0)
    assert freed is not None and freed["state"] == NodeState.IDLE and freed["jobKey"] == ""
    assert node_state.free_fields(row(NodeState.RUNNING, jobKey="other", assignmentId="x"), "job", "asg", T0) is None
    for source, targets in NODE_TRANSITIONS.items():
        for target in NodeState:
            if target == source:
                continue
            if target in targets:
                assert node_state.moved(row(source), target, "why", T0)["state"] == target
            else:
                with pytest.raises(IllegalTransition):
                    node_state.moved(row(source), target, "why", T0)
