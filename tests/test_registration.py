"""Every function of function_app.py, with its trigger and bindings, as the Functions host will index it."""

from __future__ import annotations

from typing import Any

from shared.adapters import storage
from shared.localhost.loader import load_functions

CONN = "AzureWebJobsStorage"
DATA = "BatchaiData"  # ingress: the data account

EXPECTED: dict[str, dict[str, Any]] = {
    "http_app_func": {"type": "httpTrigger", "route": "/{*route}", "authLevel": "ANONYMOUS"},
    "schedule_kick": {"type": "queueTrigger", "queueName": storage.Q_KICKS, "connection": CONN},
    "node_events": {"type": "queueTrigger", "queueName": storage.Q_EVENTS, "connection": CONN},
    "job_submission": {"type": "queueTrigger", "queueName": storage.Q_SUBMISSIONS, "connection": DATA},
    "scoring_run_kick": {"type": "queueTrigger", "queueName": storage.Q_SCORING, "connection": CONN},
    "scoring_manifest": {"type": "blobTrigger", "connection": DATA,
                         "path": storage.C_TRIGGERS + "/{subscription}/{resourceGroup}/{workspace}/{name}.json"},
    "cluster_reconcile": {"type": "timerTrigger", "schedule": "%BATCHAI_RECONCILE_SCHEDULE%", "runOnStartup": False},
    "node_reaper": {"type": "timerTrigger", "schedule": "%BATCHAI_REAPER_SCHEDULE%", "runOnStartup": False},
    "fileserver_reconcile": {"type": "timerTrigger", "schedule": "%BATCHAI_RECONCILE_SCHEDULE%",
                             "runOnStartup": False},
    "aci_jobs_tick": {"type": "timerTrigger", "schedule": "%BATCHAI_ACI_SCHEDULE%", "runOnStartup": False},
    "scheduling_safety_pass": {"type": "timerTrigger", "schedule": "%BATCHAI_SAFETY_SCHEDULE%",
                               "runOnStartup": False},
    "scoring_runs_tick": {"type": "timerTrigger", "schedule": "%BATCHAI_SCORING_SCHEDULE%", "runOnStartup": False},
    "submission_replies_tick": {"type": "timerTrigger", "schedule": "%BATCHAI_SCORING_SCHEDULE%",
                                "runOnStartup": False},
    "sweeps_tick": {"type": "timerTrigger", "schedule": "%BATCHAI_SWEEPS_SCHEDULE%", "runOnStartup": False},
}


def _plain(value: Any) -> Any:
    return getattr(value, "name", value) if not isinstance(value, str | bool | int) else value


def test_every_function_is_registered_with_its_trigger_and_bindings() -> None:
    functions = {f.get_function_name(): f for f in load_functions()}
    assert set(functions) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        trigger = functions[name].get_trigger().get_dict_repr()
        actual = {key: _plain(trigger.get(key)) for key in expected}
        assert actual == expected, name
        bindings = [b.get_dict_repr() for b in functions[name].get_bindings()]
        if name == "http_app_func":
            assert sorted(b["type"] for b in bindings) == ["http", "httpTrigger"]
            methods = {_plain(m) for m in trigger["methods"]}
            assert {"GET", "PUT", "PATCH", "POST", "DELETE"} <= methods
        else:
            assert [b["type"] for b in bindings] == [expected["type"]]
