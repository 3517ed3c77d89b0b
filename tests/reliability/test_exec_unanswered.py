"""A node command nobody can answer ends: its node gone (lost, or its row removed) or its time and the
grace after it run out, GET fails it once (NodeLost, ExecTimedOut); an answer that came first stands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.adapters import sched_store, storage
from shared.ports.rows import Delete, Merge
from shared.services import node_exec
from shared.services.node_exec import ANSWER_GRACE_S
from tests.scheduling.conftest import World

CALLER = "caller-oid"


def _start(world: World, node_id: str, now: datetime) -> str:
    return str(node_exec.start(world.settings, CALLER, world.cluster, node_id, {"command": "uptime",
                                                                                "timeoutSeconds": 30}, now)["name"])


def test_a_command_on_a_removed_node_fails_with_node_lost(world: World) -> None:
    world.cluster_doc()
    node = world.node("n1")
    now = datetime.now(UTC)
    exec_id = _start(world, node, now)
    assert node_exec.get(world.settings, CALLER, world.cluster, node, exec_id, now)["status"] == "InProgress"
    world.sched.write(Delete(world.key, sched_store.node_row(node)))
    shown = node_exec.get(world.settings, CALLER, world.cluster, node, exec_id, now)
    assert shown["status"] == "Failed" and shown["error"]["code"] == "NodeLost"


def test_a_command_past_its_time_fails_and_an_earlier_answer_stands(world: World) -> None:
    world.cluster_doc()
    node, other = world.node("n1"), world.node("n2")
    now = datetime.now(UTC)
    late, answered = _start(world, node, now), _start(world, other, now)
    world.port.table(storage.T_NODE_EXECS).write(Merge(world.key, answered, {"status": "Succeeded", "exitCode": 0},
                                                       None))
    after = now + timedelta(seconds=30 + ANSWER_GRACE_S + 1)
    assert node_exec.get(world.settings, CALLER, world.cluster, node, late, now)["status"] == "InProgress"
    shown = node_exec.get(world.settings, CALLER, world.cluster, node, late, after)
    assert shown["status"] == "Failed" and shown["error"]["code"] == "ExecTimedOut"
    assert node_exec.get(world.settings, CALLER, world.cluster, other, answered, after)["status"] == "Succeeded"
