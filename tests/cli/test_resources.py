"""Workspaces, clusters and experiments through the CLI against the real API, in table and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Run, as_json


def test_workspace_create_list_show_delete(batchai: Run) -> None:
    created = as_json(batchai("workspace", "create", "cli-ws1", "-o", "json"))
    assert created["name"] == "cli-ws1"
    assert created["id"].endswith("/providers/Microsoft.BatchAI/workspaces/cli-ws1")
    assert created["location"] == "local"
    assert created["properties"]["provisioningState"] == "succeeded"

    listed = as_json(batchai("workspace", "list", "-o", "json"))
    assert "cli-ws1" in [w["name"] for w in listed]
    table = batchai("workspace", "list").stdout
    assert "cli-ws1" in table and "Location" in table

    shown = batchai("workspace", "show", "cli-ws1").stdout
    assert "cli-ws1" in shown and "provisioningState" in shown

    batchai("workspace", "delete", "cli-ws1")
    gone = batchai("workspace", "show", "cli-ws1", check=False)
    assert gone.exit_code == 1
    assert "error:" in gone.stderr and "cli-ws1" in gone.stderr
    assert "Traceback" not in gone.stderr + gone.stdout
    assert "cli-ws1" not in [w["name"] for w in as_json(batchai("workspace", "list", "-o", "json"))]


def test_global_output_option_applies_to_every_command(batchai: Run) -> None:
    batchai("workspace", "create", "cli-ws2")
    listed = json.loads(batchai("-o", "json", "workspace", "list").stdout)
    assert "cli-ws2" in [w["name"] for w in listed]
    bad = batchai("workspace", "list", "-o", "yaml", check=False)
    assert bad.exit_code == 2 and "yaml" in bad.stderr


def test_cluster_create_from_flags_resize_and_delete(batchai: Run) -> None:
    batchai("workspace", "create", "cli-ws3")
    created = as_json(batchai("cluster", "create", "cli-ws3", "c1", "--vm-size", "STANDARD_D1_V2", "--min", "0",
                              "--max", "2", "--vm-priority", "lowpriority", "-u", "alice", "-p", "s3cret!",
                              "-o", "json"))
    props = created["properties"]
    assert props["vmSize"].lower() == "standard_d1_v2"
    assert props["vmPriority"] == "lowpriority"
    assert props["scaleSettings"]["autoScale"]["minimumNodeCount"] == 0
    assert props["scaleSettings"]["autoScale"]["maximumNodeCount"] == 2
    assert props["userAccountSettings"]["adminUserName"] == "alice"
    assert not props["userAccountSettings"].get("adminUserPassword"), "secrets are never returned"

    table = batchai("cluster", "list", "cli-ws3").stdout
    assert "c1" in table and "auto 0..2" in table

    resized = as_json(batchai("cluster", "resize", "cli-ws3", "c1", "--target", "3", "-o", "json"))
    assert resized["properties"]["scaleSettings"]["manual"]["targetNodeCount"] == 3
    shown = as_json(batchai("cluster", "show", "cli-ws3", "c1", "-o", "json"))
    assert shown["properties"]["scaleSettings"]["manual"]["targetNodeCount"] == 3

    batchai("cluster", "delete", "cli-ws3", "c1")
    assert "c1" not in [c["name"] for c in as_json(batchai("cluster", "list", "cli-ws3", "-o", "json"))]


def test_cluster_create_from_a_batch_ai_cluster_file(batchai: Run, tmp_path: Path) -> None:
    batchai("workspace", "create", "cli-ws4")
    cluster_file = tmp_path / "cluster.json"
    cluster_file.write_text(json.dumps({
        "$schema": "https://raw.githubusercontent.com/Azure/BatchAI/master/schemas/2018-05-01/cluster.json",
        "properties": {
            "vmSize": "STANDARD_NC6", "vmPriority": "dedicated",
            "scaleSettings": {"manual": {"targetNodeCount": 0}},
            "nodeSetup": {"mountVolumes": {"azureFileShares": [{
                "azureFileUrl": "https://<AZURE_BATCHAI_STORAGE_ACCOUNT>.file.core.windows.net/data",
                "relativeMountPath": "afs"}]}},
        }}))
    created = as_json(batchai("cluster", "create", "cli-ws4", "nc", "-f", str(cluster_file), "-u", "bob",
                              "-p", "pw", "-o", "json"))
    share = created["properties"]["nodeSetup"]["mountVolumes"]["azureFileShares"][0]
    assert share["azureFileUrl"] == "https://devstoreaccount1.file.core.windows.net/data"
    assert share["accountName"] == "devstoreaccount1"
    assert share["relativeMountPath"] == "afs"
    assert created["properties"]["scaleSettings"]["manual"]["targetNodeCount"] == 0


def test_cluster_scale_flags_are_checked_before_calling_the_service(batchai: Run) -> None:
    both = batchai("cluster", "create", "cli-ws4", "x", "--vm-size", "STANDARD_D1", "--target", "1", "--min", "0",
                   check=False)
    assert both.exit_code == 2 and "needs both --min and --max" in both.stderr  # --target is the initial count
    half = batchai("cluster", "resize", "cli-ws4", "x", "--min", "1", check=False)
    assert half.exit_code == 2 and "--max" in half.stderr


def test_experiment_create_list_show_delete(batchai: Run) -> None:
    batchai("workspace", "create", "cli-ws5")
    created = as_json(batchai("experiment", "create", "cli-ws5", "e1", "-o", "json"))
    assert created["name"] == "e1"
    assert created["id"].endswith("/workspaces/cli-ws5/experiments/e1")
    assert "e1" in batchai("experiment", "list", "cli-ws5").stdout
    assert as_json(batchai("experiment", "show", "cli-ws5", "e1", "-o", "json"))["name"] == "e1"
    batchai("experiment", "delete", "cli-ws5", "e1")
    assert as_json(batchai("experiment", "list", "cli-ws5", "-o", "json")) == []
