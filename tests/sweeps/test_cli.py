"""`batchai sweep create -f` (JSON or YAML), show, list and cancel against the in-process API; refusals name
the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Run, as_json, batchai, state_dir  # noqa: F401 - the CLI tests' fixtures

WS, EXP = "cli-sweeps", "exp"


@pytest.fixture(scope="module")
def workspace(state_dir: Path) -> str:  # noqa: F811
    from typer.testing import CliRunner

    from shared.cli.main import app

    runner = CliRunner()
    for args in (["workspace", "create", WS], ["experiment", "create", WS, EXP],
                 ["cluster", "create", WS, "c", "--vm-size", "STANDARD_D1", "--target", "0", "-u", "u", "-p", "p"]):
        result = runner.invoke(app, ["--state-dir", str(state_dir), *args])
        assert result.exit_code == 0, result.stderr
    return WS


SWEEP = {
    "jobTemplate": {"properties": {"stdOutErrPathPrefix": "/tmp/o",
                                   "customToolkitSettings": {"commandLine": "python train.py"}}},
    "parameterSpace": {"lr": {"type": "choice", "values": [0.1, 0.01]}, "batch": {"type": "choice", "values": [16]}},
    "sampling": {"type": "grid"},
    "primaryMetric": {"name": "acc", "goal": "maximize"},
    "budget": {"maxTotalRuns": 5, "maxConcurrentRuns": 1},
    "earlyTermination": {"type": "medianStopping", "delayEvaluation": 3}}


def test_create_show_list_cancel(workspace: str, batchai: Run, tmp_path: Path) -> None:  # noqa: F811
    file = tmp_path / "sweep.yaml"
    file.write_text(yaml.safe_dump(SWEEP))
    created = as_json(batchai("sweep", "create", WS, EXP, "grid", "-f", str(file), "--cluster", "c", "-o", "json"))
    props = created["properties"]
    assert props["state"] == "running" and props["budget"] == {"maxTotalRuns": 2, "maxConcurrentRuns": 1}
    assert props["jobTemplate"]["properties"]["cluster"]["id"].endswith(f"/workspaces/{WS}/clusters/c")
    shown = batchai("sweep", "show", "-w", WS, "-e", EXP, "-n", "grid").stdout
    assert re.search(r"^state\s+running$", shown, re.M) and re.search(r"^best run\s+none yet$", shown, re.M)
    assert re.search(r"^budget\s+0 of 2 runs, at most 1 at once$", shown, re.M), shown
    listed = as_json(batchai("sweep", "list", WS, EXP, "-o", "json"))
    assert [s["name"] for s in listed] == ["grid"]
    canceled = as_json(batchai("sweep", "cancel", WS, EXP, "grid", "-o", "json"))
    assert canceled["properties"]["state"] == "canceled"
    again = tmp_path / "sweep.json"
    again.write_text(json.dumps({"properties": {**SWEEP, "budget": {"maxTotalRuns": 0}}}))
    refused = batchai("sweep", "create", WS, EXP, "bad", "-f", str(again), "--cluster", "c", check=False)
    assert refused.exit_code == 1
    assert "InvalidRequestContent" in refused.stderr and "(at properties.budget.maxTotalRuns)" in refused.stderr
    missing = batchai("sweep", "show", WS, EXP, "nope", check=False)
    assert missing.exit_code == 1 and "ResourceNotFound" in missing.stderr
