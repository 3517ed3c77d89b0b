"""A sweep end to end on the local stack (process topology): the issue's acceptance. A seeded random sweep
of 12 runs, at most 3 at once, over the learning rate (a range whose top certainly diverges) and the batch
size of the demo's training script, which logs its test accuracy per epoch; a bandit policy. Created,
shown and listed with `batchai sweep`; the runs are real jobs on 3 local nodes.

The outcome does not depend on timing: the training is seeded, so each run's accuracies are fixed, and a
run whose model diverged keeps running until it is stopped (tests/sweeps/hold_if_diverged.py), as a long
training job would; its accuracy (about 0.1) is far below the bandit's bar (the best, about 0.95, / 1.2)
at the same interval, so the policy stops it once any good run reached that interval."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from examples.digits import train
from shared.cli.main import app
from tests.e2e.conftest import Stack, wait_until

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
WS, EXP, CLUSTER, SWEEP = "sweeps", "digits", "three", "lr"


@pytest.fixture(scope="module")
def stack(local_stack: dict[str, Any]) -> Iterator[Stack]:
    """The session's stack with a 3-node cluster of this module's own (deleted after it: its nodes are
    processes of this machine)."""
    s = Stack(local_stack)
    s.workspace(WS)
    s.client.experiments.begin_create(s.rg, WS, EXP).result()
    s.manual_cluster(WS, CLUSTER, 3)
    s.idle_nodes(WS, CLUSTER, 3)
    yield s
    s.client.clusters.begin_delete(s.rg, WS, CLUSTER).result()


def sweep_file(s: Stack, tmp_path: Path) -> Path:
    here, there = s.scratch("sweep")
    shutil.copy(train.__file__, here / "train.py")
    shutil.copy(HERE / "hold_if_diverged.py", here / "hold_if_diverged.py")
    body = {
        "jobTemplate": {"properties": {
            "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
            "customToolkitSettings": {"commandLine": f"{s.python} {there}/hold_if_diverged.py {there}/train.py "
                                                     "--epochs 3 --seed 0"}}},
        # lr = exp(uniform(-5, 4)): 0.0067 .. 54.6; past about 1 this network diverges
        "parameterSpace": {"lr": {"type": "loguniform", "min": -5, "max": 4},
                           "batch": {"type": "choice", "values": [16, 64]}},
        "sampling": {"type": "random", "seed": 9},
        "primaryMetric": {"name": "test_accuracy", "goal": "maximize"},
        "budget": {"maxTotalRuns": 12, "maxConcurrentRuns": 3},
        "earlyTermination": {"type": "bandit", "slackFactor": 0.2, "evaluationInterval": 1, "delayEvaluation": 2}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_a_seeded_random_sweep_stops_diverged_runs_and_names_the_best(stack: Stack, tmp_path: Path) -> None:
    s = stack
    endpoint = tmp_path / "endpoint.json"
    endpoint.write_text(json.dumps(s.endpoint))
    runner = CliRunner()

    def batchai(*args: str) -> str:
        result = runner.invoke(app, ["--endpoint", str(endpoint), *args])
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result.output

    created = json.loads(batchai("sweep", "create", WS, EXP, SWEEP, "-f", str(sweep_file(s, tmp_path)),
                                 "--cluster", CLUSTER, "-o", "json"))
    assert created["properties"]["state"] == "running"

    def ended() -> dict[str, Any] | None:
        sweep = json.loads(batchai("sweep", "show", WS, EXP, SWEEP, "-o", "json"))
        assert sum(r["state"] not in ("succeeded", "failed") for r in sweep["properties"]["runs"]) <= 3
        return sweep if sweep["properties"]["state"] not in ("running", "canceling") else None

    sweep = wait_until(ended, 900, interval=1, what="the sweep to end")["properties"]
    assert sweep["state"] == "succeeded", sweep["stateReason"]
    runs = sweep["runs"]
    assert [r["job"] for r in runs] == [f"{SWEEP}-{i:03d}" for i in range(12)]
    stopped = []
    for run in runs:
        job = s.client.jobs.get(s.rg, WS, EXP, run["job"])
        params = run["parameters"]
        assert f"--batch {params['batch']} --lr {params['lr']!r}" in job.custom_toolkit_settings.command_line
        env = {v.name: v.value for v in job.environment_variables}
        assert env["AZ_BATCHAI_PARAM_LR"] == repr(params["lr"]) and env["AZ_BATCHAI_PARAM_BATCH"] == \
            str(params["batch"])
        diverged = max(run["values"]) < 0.5
        if diverged:  # only the policy ends these
            assert job.execution_state == "failed", run
            [error] = job.execution_info.errors
            assert error.code == "EarlyTerminated"
            assert re.fullmatch(r"bandit policy: test_accuracy [0-9.e-]+ at interval \d is below [0-9.e-]+ "
                                r"\(best [0-9.e-]+ / \(1 \+ slack factor 0\.2\)\)", error.message), error.message
            assert run["earlyTerminated"] == error.message
            stopped.append(run["job"])
        elif run.get("earlyTerminated") is None:
            assert job.execution_state == "succeeded", (run, job.execution_info)
            assert run["reports"] == 3
    assert stopped, "no run diverged: the sweep's range should reach learning rates that do"
    finished = [r for r in runs if r["state"] == "succeeded" and "earlyTerminated" not in r]
    best = max(finished, key=lambda r: r["metric"])
    assert sweep["bestRun"]["name"] == best["job"] and sweep["bestRun"]["value"] == best["metric"] > 0.9
    stdout = s.download(s.output_files(WS, EXP, best["job"])["stdout.txt"].download_url)
    params = best["parameters"]
    assert f"AZ_BATCHAI_PARAM_BATCH={params['batch']}\nAZ_BATCHAI_PARAM_LR={params['lr']!r}\n" in stdout  # the task's
    shown = batchai("sweep", "show", WS, EXP, SWEEP)
    assert re.search(rf"^best run\s+{best['job']} \(test_accuracy = {best['metric']}\)$", shown, re.M), shown
    assert re.search(r"^state\s+succeeded$", shown, re.M)
    listed = json.loads(batchai("sweep", "list", WS, EXP, "-o", "json"))
    assert [x["name"] for x in listed] == [SWEEP]
