"""The sweep service against Azurite, through the in-process API and called directly: children up to the
concurrency budget, parameters on each child, the policy stopping a child with its reason, the best run,
cancel, delete, repeated ticks. Children run on a cluster of no nodes, so they stay queued; their metrics
are written as a node agent streams stdout (append blobs under the job's output prefix)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.config import Settings
from shared.domain.keys import ExperimentRef, WorkspaceRef
from shared.services import jobs, sweeps
from tests.metrics.conftest import API, CLUSTER, client
from tests.sweeps.conftest import contract_errors, report

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class World:
    http: httpx.Client
    conn: str
    ws: str  # the workspace's ARM id
    experiment: ExperimentRef

    def put(self, name: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.put(f"{self.ws}/experiments/e/sweeps/{name}?{API}", json=body)

    def get(self, name: str) -> dict[str, Any]:
        r = self.http.get(f"{self.ws}/experiments/e/sweeps/{name}?{API}")
        assert r.status_code == 200, r.text
        return r.json()

    def job(self, name: str) -> dict[str, Any]:
        r = self.http.get(f"{self.ws}/experiments/e/jobs/{name}?{API}")
        assert r.status_code == 200, r.text
        return r.json()

    def report(self, job: str, *values: float) -> None:
        report(self.http, self.conn, self.ws, job, "acc", *values)

    def tick(self, name: str) -> str | None:
        return sweeps.advance(Settings.from_env(), sweeps.SweepRef(self.experiment, name), NOW)


@pytest.fixture()
def world(api_endpoint: dict[str, str], storage_conn: str) -> Iterator[World]:
    rg = f"sweeps-{uuid.uuid4().hex[:8]}"
    ws = (f"/subscriptions/{api_endpoint['subscription_id']}/resourceGroups/{rg}"
          "/providers/Microsoft.BatchAI/workspaces/ws")
    with client(api_endpoint, api_endpoint["token"]) as http:
        assert http.put(f"{ws}?{API}", json={"location": "local"}).status_code == 200
        assert http.put(f"{ws}/clusters/c?{API}", json=CLUSTER).status_code == 200
        assert http.put(f"{ws}/experiments/e?{API}", json={}).status_code == 200
        ref = WorkspaceRef(api_endpoint["subscription_id"], rg, "ws").experiment("e")
        yield World(http, storage_conn, ws, ref)


def body(world: World, total: int = 4, concurrent: int = 2, **extra: Any) -> dict[str, Any]:
    return {"properties": {
        "jobTemplate": {"properties": {"cluster": {"id": f"{world.ws}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/o",
                                       "customToolkitSettings": {"commandLine": "python train.py --epochs 3"}}},
        "parameterSpace": {"lr": {"type": "loguniform", "min": -7, "max": 3},
                           "batch": {"type": "choice", "values": [16, 64]}},
        "sampling": {"type": "random", "seed": 11},
        "primaryMetric": {"name": "acc", "goal": "maximize"},
        "budget": {"maxTotalRuns": total, "maxConcurrentRuns": concurrent},
        "earlyTermination": {"type": "bandit", "slackFactor": 0.2, "evaluationInterval": 1, "delayEvaluation": 2},
        **extra}}


def states(world: World, sweep: dict[str, Any]) -> dict[str, str]:
    return {r["job"]: world.job(r["job"])["properties"]["executionState"] for r in sweep["properties"]["runs"]}


def test_children_policy_and_best_run(world: World) -> None:
    r = world.put("s", body(world))
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["type"] == "Microsoft.BatchAI/workspaces/experiments/sweeps"
    assert created["properties"]["state"] == "running" and created["properties"]["budget"] == {
        "maxTotalRuns": 4, "maxConcurrentRuns": 2}
    assert world.put("s", body(world)).status_code == 200  # the same PUT again: the same sweep
    assert world.put("s", body(world, total=5)).status_code == 409
    assert world.tick("s") == "running"
    assert world.tick("s") == "running"  # a repeated tick creates nothing more
    sweep = world.get("s")
    assert [r["job"] for r in sweep["properties"]["runs"]] == ["s-000", "s-001"]
    child = world.job("s-000")["properties"]
    params = sweep["properties"]["runs"][0]["parameters"]
    assert child["sweep"] == {"name": "s", "index": 0, "parameters": params}
    assert child["customToolkitSettings"]["commandLine"] == \
        f"python train.py --epochs 3 --batch {params['batch']} --lr {params['lr']!r}"
    env = {v["name"]: v["value"] for v in child["environmentVariables"]}
    assert env == {"AZ_BATCHAI_PARAM_LR": repr(params["lr"]), "AZ_BATCHAI_PARAM_BATCH": str(params["batch"])}

    world.report("s-000", 0.5, 0.8)  # not judged before 2 reports (delayEvaluation 2)
    world.report("s-001", 0.1)
    assert world.tick("s") == "running"
    assert states(world, world.get("s")) == {"s-000": "queued", "s-001": "queued"}
    world.report("s-001", 0.12)  # interval 2: 0.12 < 0.8 / 1.2
    world.tick("s")
    sweep = world.get("s")["properties"]
    stopped = world.job("s-001")["properties"]
    assert stopped["executionState"] == "failed"
    [error] = stopped["executionInfo"]["errors"]
    assert error["code"] == "EarlyTerminated"
    assert error["message"] == ("bandit policy: acc 0.12 at interval 2 is below 0.666667 "
                                "(best 0.8 / (1 + slack factor 0.2))")
    assert [r["job"] for r in sweep["runs"]] == ["s-000", "s-001", "s-002"]  # its place went to a new child
    assert sweep["runs"][1]["earlyTerminated"] == error["message"]
    assert sweep["bestRun"]["name"] == "s-000" and sweep["bestRun"]["value"] == 0.8
    world.report("s-002", 0.9, 0.95)
    world.tick("s")
    assert world.get("s")["properties"]["bestRun"]["name"] == "s-002"
    assert contract_errors(world.get("s"), "Sweep") == []
    assert contract_errors(body(world), "SweepCreateParameters") == []


def test_the_budget_ends_the_sweep_with_its_best_run(world: World) -> None:
    assert world.put("b", body(world, total=2, concurrent=2, earlyTermination=None)).status_code == 200
    world.tick("b")
    world.report("b-000", 0.3, 0.7)
    world.report("b-001", 0.6, 0.65)
    settings = Settings.from_env()
    for name in ("b-000", "b-001"):  # the children end (here by terminate: their cluster has no nodes)
        jobs.terminate(settings, world.experiment.job(name))
    assert world.tick("b") == "succeeded"
    sweep = world.get("b")["properties"]
    assert sweep["bestRun"] == {"name": "b-000", "index": 0, "metric": "acc", "value": 0.7,
                                "parameters": sweep["runs"][0]["parameters"]}
    assert sweep["summary"] == {"created": 2, "earlyTerminated": 0, "running": 0, "succeeded": 0}
    assert "best run b-000" in sweep["stateReason"]
    assert world.tick("b") == "succeeded"  # ended sweeps stay as they are
    listed = world.http.get(f"{world.ws}/experiments/e/sweeps?{API}").json()
    assert [s["name"] for s in listed["value"]] == ["b"]
    assert contract_errors(listed, "SweepListResult") == []


def test_cancel_stops_every_child_and_delete_removes_the_sweep(world: World) -> None:
    assert world.put("c", body(world, total=6, concurrent=3)).status_code == 200
    assert sweeps.reconcile_all(Settings.from_env(), NOW) >= 1  # the timer's entry point finds it
    assert len(world.get("c")["properties"]["runs"]) == 3
    r = world.http.post(f"{world.ws}/experiments/e/sweeps/c/cancel?{API}")
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["state"] == "canceled"  # queued children end at once
    assert set(states(world, r.json()).values()) == {"failed"}
    assert len(r.json()["properties"]["runs"]) == 3  # no child after the cancel
    assert world.tick("c") == "canceled"
    assert world.http.delete(f"{world.ws}/experiments/e/sweeps/c?{API}").status_code == 200
    assert world.http.get(f"{world.ws}/experiments/e/sweeps/c?{API}").status_code == 404
    assert world.http.delete(f"{world.ws}/experiments/e/sweeps/c?{API}").status_code == 204
    assert world.job("c-000")["properties"]["executionState"] == "failed"  # the children stay


@pytest.mark.parametrize(("change", "target"), [
    ({"budget": {"maxTotalRuns": 0}}, "properties.budget.maxTotalRuns"),
    ({"jobTemplate": {"properties": {"customToolkitSettings": {"commandLine": "x"}}}},
     "properties.jobTemplate.properties.cluster"),
])
def test_bad_bodies_are_400_naming_the_field(world: World, change: dict[str, Any], target: str) -> None:
    b = body(world)
    b["properties"].update(change)
    r = world.put("bad", b)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["target"] == target
    assert world.http.get(f"{world.ws}/experiments/e/sweeps/bad?{API}").status_code == 404


def test_concurrent_ticks_create_each_child_once(world: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    assert world.put("k", body(world, total=6, concurrent=2)).status_code == 200
    with ThreadPoolExecutor(4) as pool:
        states_after = list(pool.map(lambda _: world.tick("k"), range(4)))
    assert states_after == ["running"] * 4
    assert [r["job"] for r in world.get("k")["properties"]["runs"]] == ["k-000", "k-001"]
    listed = world.http.get(f"{world.ws}/experiments/e/jobs?{API}").json()["value"]
    assert sorted(j["name"] for j in listed if j["name"].startswith("k-")) == ["k-000", "k-001"]


def test_deleting_the_experiment_cancels_and_removes_its_sweeps(world: World) -> None:
    from shared.services import removal
    from tests.polling import wait_until

    assert world.put("x", body(world, total=6, concurrent=2)).status_code == 200
    world.tick("x")
    r = world.http.delete(f"{world.ws}/experiments/e?{API}")
    assert r.status_code == 202, r.text

    def gone() -> bool:
        removal.reconcile_all(Settings.from_env(), NOW)
        return world.http.get(f"{world.ws}/experiments/e?{API}").status_code == 404
    wait_until(gone, 60, what="the experiment's deletion", interval=0.2)
    assert world.http.get(f"{world.ws}/experiments/e/sweeps/x?{API}").status_code == 404
    assert list(sweeps.sweeps_store(Settings.from_env()).scan(pk=world.experiment.job_pk)) == []
    assert world.tick("x") is None
