"""The sweep's dashboard page: listed on its experiment's page, its state, best run, runs with the policy's
reasons, and the metric-vs-run chart drawing exactly the runs' values; readable as the API is."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.config import Settings
from shared.dashboard.sweeps import metric_vs_run
from shared.domain.keys import WorkspaceRef
from shared.services import sweeps
from tests.authz.conftest import client as api_client
from tests.dashboard.conftest import World, sign_in, world  # noqa: F401 - the dashboard tests' fixture
from tests.sweeps.conftest import API, report

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EXP = "sweeps"  # an experiment of its own in the dashboard tests' workspace


def test_metric_vs_run_draws_each_runs_last_value_and_the_best_so_far() -> None:
    runs = [{"index": 0, "state": "succeeded", "metric": 0.7}, {"index": 1, "state": "failed", "metric": 0.1,
                                                                "earlyTerminated": "bandit policy: ..."},
            {"index": 2, "state": "running", "metric": 0.9}, {"index": 3, "state": "queued", "metric": None}]
    chart = metric_vs_run({"properties": {"runs": runs, "primaryMetric": {"name": "acc", "goal": "maximize"}}})
    lines = {line.label: line for line in chart.lines}
    assert [(d.x, d.y) for d in lines["runs"].dots] == [(0.0, 0.7), (2.0, 0.9)]
    assert [(d.x, d.y) for d in lines["stopped early"].dots] == [(1.0, 0.1)]
    assert [(d.x, d.y) for d in lines["best so far"].dots] == [(0.0, 0.7), (1.0, 0.7), (2.0, 0.9)]
    assert lines["runs"].points == "" and lines["best so far"].points


def test_the_sweep_page_shows_runs_reasons_and_best_run(world: World, storage_conn: str) -> None:  # noqa: F811
    w = world
    sub, rg = w.ws.split("/")[2], w.ws.split("/")[4]
    body = {"properties": {
        "jobTemplate": {"properties": {"cluster": {"id": f"{w.ws}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/o",
                                       "customToolkitSettings": {"commandLine": "true"}}},
        "parameterSpace": {"lr": {"type": "choice", "values": [0.1, 0.2]}}, "sampling": {"type": "grid"},
        "primaryMetric": {"name": "acc", "goal": "maximize"}, "budget": {"maxTotalRuns": 2},
        "earlyTermination": {"type": "bandit", "slackAmount": 0.1}}}
    with api_client(w.endpoint, w.endpoint["token"]) as owner:
        assert owner.put(f"{w.ws}/experiments/{EXP}?{API}", json={}).status_code == 200
        assert owner.put(f"{w.ws}/experiments/{EXP}/sweeps/dash?{API}", json=body).status_code == 200
        ref = sweeps.SweepRef(WorkspaceRef(sub, rg, "ws").experiment(EXP), "dash")
        sweeps.advance(Settings.from_env(), ref, NOW)
        report(owner, storage_conn, w.ws, "dash-000", "acc", 0.9, exp=EXP)
        report(owner, storage_conn, w.ws, "dash-001", "acc", 0.5, exp=EXP)
        sweeps.advance(Settings.from_env(), ref, NOW)
    reader = sign_in(w.endpoint, w.people["reader"])
    experiment = reader.get(w.page(f"{w.ws}/experiments/{EXP}"))
    assert experiment.status_code == 200 and 'id="sweeps"' in experiment.text
    assert w.page(f"{w.ws}/experiments/{EXP}/sweeps/dash") in experiment.text
    page = reader.get(w.page(f"{w.ws}/experiments/{EXP}/sweeps/dash"))
    assert page.status_code == 200, page.text
    assert 'id="sweep-chart"' in page.text and 'data-y="0.9"' in page.text and 'data-y="0.5"' in page.text
    assert 'id="run-dash-001"' in page.text
    assert "bandit policy: acc 0.5 at interval 1 is below 0.8 (best 0.9 - slack amount 0.1)" in page.text
    assert 'id="best-run"' in page.text and "dash-000</a>: acc = 0.9" in page.text
    assert 'hx-trigger="every 3s"' in page.text  # the sweep still runs: its page keeps asking
    status = reader.get(w.page(f"{w.ws}/experiments/{EXP}/sweeps/dash", "status"))
    assert status.status_code == 200 and 'id="sweep"' in status.text
    nobody = sign_in(w.endpoint, w.people["nobody"])
    assert nobody.get(w.page(f"{w.ws}/experiments/{EXP}/sweeps/dash")).status_code == 403
