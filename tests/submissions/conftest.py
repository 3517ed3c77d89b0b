"""Submission fixtures: the local stack with a workspace, an experiment and a 2-node cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.scoring.conftest import ScoringStack

WS, EXP, CLUSTER = "subs", "queued", "two"


@pytest.fixture(scope="session")
def subs_stack(local_stack: dict[str, Any]) -> ScoringStack:
    s = ScoringStack(local_stack)
    s.workspace(WS)
    s.client.experiments.begin_create(s.rg, WS, EXP).result()
    s.manual_cluster(WS, CLUSTER, 2)
    s.idle_nodes(WS, CLUSTER, 2)
    return s
