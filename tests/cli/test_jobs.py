"""`batchai job create -f` with Batch AI job files (and bad ones), list, show, delete against the real API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Run, as_json

WS, EXP = "cli-jobs", "exp"
SCHEMA = "https://raw.githubusercontent.com/Azure/BatchAI/master/schemas/2018-05-01/job.json"


@pytest.fixture(scope="module")
def workspace(state_dir: Path) -> str:
    from typer.testing import CliRunner

    from shared.cli.main import app

    runner = CliRunner()
    for args in (["workspace", "create", WS], ["experiment", "create", WS, EXP],
                 ["cluster", "create", WS, "gpu", "--vm-size", "STANDARD_NC6", "--target", "0", "-u", "u", "-p", "p"]):
        result = runner.invoke(app, ["--state-dir", str(state_dir), *args])
        assert result.exit_code == 0, result.stderr
    return WS


def job_file(tmp_path: Path, properties: dict[str, Any], name: str = "job.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"$schema": SCHEMA, "properties": properties}, indent=2))
    return str(path)


def test_job_create_from_a_job_file_with_cluster_name(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path, {
        "nodeCount": 1,
        "schedulingPriority": "high",
        "customToolkitSettings": {"commandLine": "echo hello from $AZ_BATCHAI_TASK_INDEX"},
        "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
        "environmentVariables": [{"name": "GREETING", "value": "hi"}],
        "outputDirectories": [{"id": "MODEL", "pathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/out"}],
    })
    created = as_json(batchai("job", "create", workspace, EXP, "j1", "-f", path, "--cluster", "gpu", "-o", "json"))
    props = created["properties"]
    assert props["cluster"]["id"].endswith(f"/workspaces/{workspace}/clusters/gpu")
    assert props["cluster"]["id"].startswith("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/demo/")
    assert props["customToolkitSettings"]["commandLine"] == "echo hello from $AZ_BATCHAI_TASK_INDEX"
    assert props["schedulingPriority"] == "high"
    assert props["outputDirectories"][0]["id"] == "MODEL"
    assert props["executionState"] in ("queued", "running", "succeeded", "failed")

    table = batchai("job", "list", workspace, EXP).stdout
    assert "j1" in table and "gpu" in table
    shown = as_json(batchai("job", "show", workspace, EXP, "j1", "-o", "json"))
    assert shown["name"] == "j1" and shown["properties"]["nodeCount"] == 1

    batchai("job", "delete", workspace, EXP, "j1")
    gone = batchai("job", "show", workspace, EXP, "j1", check=False)
    assert gone.exit_code == 1 and "error:" in gone.stderr


def test_recipe_job_file_with_storage_placeholders(batchai: Run, workspace: str, tmp_path: Path) -> None:
    """A Batch AI recipe's file, as published: placeholders and missing credentials are filled in."""
    path = job_file(tmp_path, {
        "nodeCount": 1,
        "tensorFlowSettings": {"pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/scripts/convolutional.py"},
        "stdOutErrPathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/logs",
        "mountVolumes": {"azureFileShares": [
            {"azureFileUrl": "https://<AZURE_BATCHAI_STORAGE_ACCOUNT>.file.core.windows.net/scripts",
             "relativeMountPath": "scripts"}]},
    })
    created = as_json(batchai("job", "create", workspace, EXP, "tf", "-f", path, "-c", "gpu", "-o", "json"))
    share = created["properties"]["mountVolumes"]["azureFileShares"][0]
    assert share["azureFileUrl"] == "https://devstoreaccount1.file.core.windows.net/scripts"
    assert share["accountName"] == "devstoreaccount1"
    assert created["properties"]["tensorFlowSettings"]["pythonScriptFilePath"].endswith("convolutional.py")


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "is not valid JSON"),
    (json.dumps({"properties": {"nodeCount": "two", "customToolkitSettings": {"commandLine": "true"}}}),
     "properties.nodeCount: 'two' is not of type 'integer'"),
    (json.dumps({"properties": {"customToolkitSetings": {"commandLine": "true"}}}),
     "did you mean 'customToolkitSettings'"),
    (json.dumps({"properties": {"schedulingPriority": "urgent"}}), "'urgent' is not one of"),
    (json.dumps([1, 2]), "must hold a JSON object"),
])
def test_bad_job_files_are_refused_with_a_clear_error(batchai: Run, workspace: str, tmp_path: Path, content: str,
                                                      expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = batchai("job", "create", workspace, EXP, "bad", "-f", str(path), "--cluster", "gpu", check=False)
    assert result.exit_code != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert batchai("job", "show", workspace, EXP, "bad", check=False).exit_code == 1


def test_job_file_without_a_cluster_needs_cluster_option(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path, {"customToolkitSettings": {"commandLine": "true"}})
    result = batchai("job", "create", workspace, EXP, "nocluster", "-f", path, check=False)
    assert result.exit_code != 0 and "--cluster" in result.stderr


def test_service_rejections_print_the_arm_error(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path, {"customToolkitSettings": {"commandLine": "true"},
                               "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs"})
    result = batchai("job", "create", workspace, "no-such-experiment", "j", "-f", path, "--cluster", "gpu",
                     check=False)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and ":" in result.stderr[len("error: "):]
    assert "Traceback" not in result.stderr
