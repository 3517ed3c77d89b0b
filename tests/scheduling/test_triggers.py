"""The scheduling blueprint: its registration in function_app.py and its functions called directly."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import azure.functions as func
import pytest

from shared.config import Settings
from shared.localhost.loader import load_functions
from shared.ports.rows import Delete
from shared.services import scheduling
from tests.scheduling.conftest import T0, World

EXPECTED = {
    "schedule_kick": {"type": "queueTrigger", "queueName": "schedule-kicks", "connection": "AzureWebJobsStorage",
                      "name": "msg"},
    "node_events": {"type": "queueTrigger", "queueName": "node-events", "connection": "AzureWebJobsStorage",
                    "name": "msg"},
    "scheduling_safety_pass": {"type": "timerTrigger", "schedule": "%BATCHAI_SAFETY_SCHEDULE%", "runOnStartup": False,
                               "useMonitor": False, "name": "timer"},
}


@pytest.fixture()
def settings(storage_conn: str) -> Settings:
    """Azurite only: the functions read their storage from the environment."""
    return dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn, max_retries=2)


def _functions() -> dict[str, Any]:
    return {f.get_function_name(): f for f in load_functions()}


def test_blueprint_is_registered_with_its_bindings() -> None:
    functions = _functions()
    for name, binding in EXPECTED.items():
        trigger = functions[name].get_trigger().get_dict_repr()
        assert {k: trigger[k] for k in binding} == binding, name


def _message(body: dict[str, Any]) -> func.QueueMessage:
    return func.QueueMessage(id="1", body=json.dumps(body).encode("utf-8"))


def test_kick_then_events_through_the_triggers(world: World) -> None:
    functions = _functions()
    world.cluster_doc()
    n1 = world.node("n1")
    job = world.submit("via-triggers")
    functions["schedule_kick"].get_user_function()(_message({"cluster": world.key}))
    (assignment,) = world.messages(n1)
    assert assignment.job_key == job.key
    events = functions["node_events"].get_user_function()
    for kind, extra in (("task-started", {}), ("task-exited", {"exit_code": 0})):
        event = world.event(kind, n1, job, assignment.assignment_id, **extra)
        events(_message(json.loads(event.to_json())))
    assert world.internal(job)["phase"] == "succeeded"
    assert world.node_row(n1)["state"] == "idle"


def test_safety_timer_runs_the_safety_pass(world: World) -> None:
    world.cluster_doc()
    world.node("n1")
    job = world.submit("lost-index")
    world.sched.write(Delete(world.key, next(r["RowKey"] for r in world.rows() if r.get("jobKey") == job.key)))
    _functions()["scheduling_safety_pass"].get_user_function()(None)
    assert world.pending_keys() == [job.key]
    assert scheduling.run_pass(world.settings, world.key, T0).assigned[0].job_key == job.key
