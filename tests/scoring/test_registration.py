"""The event triggers are registered in function_app with their names and bindings."""

from __future__ import annotations

from typing import Any

from functions import triggers
from shared.localhost.loader import load_functions

EXPECTED: dict[str, dict[str, Any]] = {
    "scoring_manifest": {"type": "blobTrigger", "connection": "BatchaiData",
                         "path": "batchai-triggers/{subscription}/{resourceGroup}/{workspace}/{name}.json"},
    "job_submission": {"type": "queueTrigger", "queueName": "job-submissions", "connection": "BatchaiData"},
    "scoring_run_kick": {"type": "queueTrigger", "queueName": "scoring-kicks", "connection": "AzureWebJobsStorage"},
    "scoring_runs_tick": {"type": "timerTrigger", "schedule": "%BATCHAI_SCORING_SCHEDULE%", "runOnStartup": False,
                          "useMonitor": False},
    "submission_replies_tick": {"type": "timerTrigger", "schedule": "%BATCHAI_SCORING_SCHEDULE%",
                                "runOnStartup": False, "useMonitor": False},
}


def test_triggers_are_registered_with_their_bindings() -> None:
    functions = {f.get_function_name(): f for f in load_functions()}
    for name, binding in EXPECTED.items():
        trigger = functions[name].get_trigger().get_dict_repr()
        assert {k: trigger[k] for k in binding} == binding, name
    assert set(triggers.SCHEDULES) == {"BATCHAI_SCORING_SCHEDULE"}


def test_the_local_stack_sets_the_scoring_schedule() -> None:
    from shared.localstack.stack import LOCAL_SETTINGS

    assert LOCAL_SETTINGS["BATCHAI_SCORING_SCHEDULE"] == triggers.SCHEDULES["BATCHAI_SCORING_SCHEDULE"]["local"]


def test_openapi_documents_the_added_routes() -> None:
    from functions.http_api import api

    paths = api.openapi()["paths"]
    runs = [p for p in paths if p.endswith("/batchScoringRuns/{runName}")]
    assert runs and "200" in paths[runs[0]]["get"]["responses"]
    assert any(p.endswith("/providers/Microsoft.BatchAI/rejectedSubmissions") for p in paths)
