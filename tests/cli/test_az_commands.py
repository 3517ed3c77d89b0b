"""The `az batchai` command set and flags against the real API: each verb's effect on the resources."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from shared.adapters import storage
from shared.config import Settings
from tests.cli.conftest import Run, as_json
from tests.polling import wait_until

SUB = "00000000-0000-0000-0000-000000000000"
ACCOUNT = "devstoreaccount1"

AZ_COMMANDS = {
    "workspace create", "workspace delete", "workspace list", "workspace show",
    "cluster create", "cluster delete", "cluster list", "cluster show", "cluster resize", "cluster auto-scale",
    "cluster node list", "cluster file list",
    "experiment create", "experiment delete", "experiment list", "experiment show",
    "job create", "job delete", "job list", "job show", "job terminate", "job wait", "job file list",
    "job file stream", "job node list",
    "file-server create", "file-server delete", "file-server list", "file-server show",
    "list-usages",
}


def test_help_lists_every_group_and_verb(batchai: Run) -> None:
    text = batchai("--help").stdout
    listed = set(re.findall(r"^  ([a-z-]+(?: [a-z-]+)*?)\s{2,}\S", text.split("Every command:")[1], re.M))
    assert listed >= AZ_COMMANDS, AZ_COMMANDS - listed


def test_workspace_and_experiment_flags(batchai: Run) -> None:
    created = as_json(batchai("workspace", "create", "-g", "demo", "-n", "az-ws1", "-l", "westeurope", "-o", "json"))
    assert created["location"] == "westeurope" and created["name"] == "az-ws1"
    assert as_json(batchai("workspace", "show", "-n", "az-ws1", "-o", "json"))["id"] == created["id"]
    exp = as_json(batchai("experiment", "create", "-w", "az-ws1", "-n", "e1", "-o", "json"))
    assert exp["id"] == f"{created['id']}/experiments/e1"
    assert [e["name"] for e in as_json(batchai("experiment", "list", "-w", "az-ws1", "-o", "json"))] == ["e1"]
    assert as_json(batchai("experiment", "show", "-w", "az-ws1", "-n", "e1", "-o", "json"))["name"] == "e1"
    batchai("experiment", "delete", "-w", "az-ws1", "-n", "e1", "--yes")
    assert "ExperimentNotFound" in batchai("experiment", "show", "-w", "az-ws1", "-n", "e1", check=False).stderr

    clash = batchai("workspace", "show", "az-ws1", "-n", "other", check=False)
    assert clash.exit_code == 2 and "given twice" in clash.stderr
    assert batchai("experiment", "list", check=False).exit_code == 2

    batchai("workspace", "delete", "-n", "az-ws1", "-y", "--no-wait")  # accepted; the reconcile tick removes it
    wait_until(lambda: "WorkspaceNotFound" in batchai("workspace", "show", "-n", "az-ws1", check=False).stderr,
               120, "the workspace to be deleted")
    gone = batchai("workspace", "show", "-n", "az-ws1", check=False)
    assert gone.exit_code == 1 and "WorkspaceNotFound" in gone.stderr


def test_cluster_create_with_az_flags(batchai: Run, tmp_path: Path) -> None:
    batchai("workspace", "create", "-n", "az-ws2")
    batchai("file-server", "create", "-w", "az-ws2", "-n", "nfs1", "-s", "STANDARD_D2", "--disk-count", "2",
            "--disk-size", "10", "--storage-sku", "Standard_LRS", "-u", "admin", "-p", "pw")
    image = f"/subscriptions/{SUB}/resourceGroups/images/providers/Microsoft.Compute/images/tuned"
    subnet = f"/subscriptions/{SUB}/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/s"
    created = as_json(batchai(
        "cluster", "create", "-w", "az-ws2", "-n", "c1", "-s", "STANDARD_NC6", "--vm-priority", "lowpriority",
        "-t", "1", "--min", "0", "--max", "3", "-i", "Canonical:UbuntuServer:16.04-LTS:", "--custom-image", image,
        "--subnet", subnet, "--setup-task", "echo ready > $AZ_BATCHAI_MOUNT_ROOT/afs/ready",
        "--setup-task-output", "$AZ_BATCHAI_MOUNT_ROOT/afs", "--nfs", "nfs1", "--nfs-mount-path", "data",
        "--afs-name", "scripts", "--bfs-name", "inputs", "--bfs-mount-path", "in",
        "--storage-account-name", ACCOUNT, "--storage-account-key", "k3y", "-u", "alice", "-p", "s3cret",
        "-o", "json"))
    props = created["properties"]
    assert props["vmSize"].lower() == "standard_nc6" and props["vmPriority"] == "lowpriority"
    assert props["scaleSettings"]["autoScale"] == {"minimumNodeCount": 0, "maximumNodeCount": 3,
                                                   "initialNodeCount": 1}
    assert props["virtualMachineConfiguration"]["imageReference"] == {
        "publisher": "Canonical", "offer": "UbuntuServer", "sku": "16.04-LTS", "virtualMachineImageId": image}
    assert props["subnet"]["id"] == subnet
    task = props["nodeSetup"]["setupTask"]
    assert task["commandLine"].startswith("echo ready") and task["stdOutErrPathPrefix"] == "$AZ_BATCHAI_MOUNT_ROOT/afs"
    assert task["stdOutErrPathSuffix"]  # the service's own, as Batch AI made it
    volumes = props["nodeSetup"]["mountVolumes"]
    nfs = as_json(batchai("file-server", "show", "-w", "az-ws2", "-n", "nfs1", "-o", "json"))
    assert volumes["fileServers"] == [{"fileServer": {"id": nfs["id"]}, "relativeMountPath": "data",
                                       "mountOptions": "rw"}]
    afs = volumes["azureFileShares"][0]
    assert (afs["accountName"], afs["azureFileUrl"], afs["relativeMountPath"]) == (
        ACCOUNT, f"https://{ACCOUNT}.file.core.windows.net/scripts", "afs")
    bfs = volumes["azureBlobFileSystems"][0]
    assert (bfs["accountName"], bfs["containerName"], bfs["relativeMountPath"]) == (ACCOUNT, "inputs", "in")
    assert props["userAccountSettings"] == {"adminUserName": "alice"}  # the password is stored, never returned

    alias = as_json(batchai("cluster", "create", "-w", "az-ws2", "-n", "c2", "-s", "STANDARD_D1", "-t", "2",
                            "--image", "ubuntudsvm", "-u", "bob", "-p", "pw", "-o", "json"))["properties"]
    assert alias["scaleSettings"]["manual"]["targetNodeCount"] == 2
    assert alias["virtualMachineConfiguration"]["imageReference"]["offer"] == "linux-data-science-vm-ubuntu"
    for flags, expected in [(["--image", "Windows"], "unknown --image alias"),
                            (["--custom-image", image], "needs --image"),
                            (["--setup-task", "true"], "needs --setup-task-output"),
                            (["--nfs", "nosuchfs"], "FileServerNotFound"),
                            (["--min", "3", "--max", "1"], "greater than --max")]:
        bad = batchai("cluster", "create", "-w", "az-ws2", "-n", "bad", "-s", "STANDARD_D1", "-p", "pw", *flags,
                      check=False)
        assert bad.exit_code in (1, 2) and expected in bad.stderr, (flags, bad.stderr)
    assert "ClusterNotFound" in batchai("cluster", "show", "-w", "az-ws2", "-n", "bad", check=False).stderr


def test_cluster_resize_auto_scale_and_delete(batchai: Run) -> None:
    batchai("workspace", "create", "-n", "az-ws3")
    batchai("cluster", "create", "-w", "az-ws3", "-n", "c", "-s", "STANDARD_D1", "-t", "0", "-p", "pw")
    resized = as_json(batchai("cluster", "resize", "-w", "az-ws3", "-n", "c", "-t", "2", "-o", "json"))
    assert resized["properties"]["scaleSettings"] == {"manual": {"targetNodeCount": 2,
                                                                 "nodeDeallocationOption": "requeue"}}
    batchai("cluster", "auto-scale", "-w", "az-ws3", "-n", "c", "--min", "1", "--max", "4")
    shown = as_json(batchai("cluster", "show", "-w", "az-ws3", "-n", "c", "-o", "json"))["properties"]
    assert shown["scaleSettings"]["autoScale"]["minimumNodeCount"] == 1
    assert shown["scaleSettings"]["autoScale"]["maximumNodeCount"] == 4
    assert batchai("cluster", "auto-scale", "-w", "az-ws3", "-n", "c", "--min", "1", check=False).exit_code == 2
    assert [c["name"] for c in as_json(batchai("cluster", "list", "-w", "az-ws3", "-o", "json"))] == ["c"]
    batchai("cluster", "delete", "-w", "az-ws3", "-n", "c", "-y")
    assert as_json(batchai("cluster", "list", "-w", "az-ws3", "-o", "json")) == []
    assert "ClusterNotFound" in batchai("cluster", "show", "-w", "az-ws3", "-n", "c", check=False).stderr


def test_ssh_keys_are_generated_once_and_used(batchai: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    batchai("workspace", "create", "-n", "az-ws4")
    first = as_json(batchai("cluster", "create", "-w", "az-ws4", "-n", "k1", "-s", "STANDARD_D1", "-u", "k",
                            "--generate-ssh-keys", "-o", "json"))["properties"]["userAccountSettings"]
    public = (tmp_path / ".ssh" / "id_rsa.pub").read_text().strip()
    assert public.startswith("ssh-rsa ") and first["adminUserSshPublicKey"] == public
    assert (tmp_path / ".ssh" / "id_rsa").stat().st_mode & 0o777 == 0o600
    again = as_json(batchai("file-server", "create", "-w", "az-ws4", "-n", "fs", "-s", "STANDARD_D2",
                            "--disk-count", "1", "--disk-size", "1", "--storage-sku", "Premium_LRS",
                            "--caching-type", "readonly", "--generate-ssh-keys", "-o", "json"))["properties"]
    assert again["sshConfiguration"]["userAccountSettings"]["adminUserSshPublicKey"] == public  # not regenerated
    assert again["dataDisks"] == {"diskSizeInGB": 1, "diskCount": 1, "storageAccountType": "Premium_LRS",
                                  "cachingType": "readonly"}
    by_key = as_json(batchai("cluster", "create", "-w", "az-ws4", "-n", "k2", "-s", "STANDARD_D1", "-k",
                             str(tmp_path / ".ssh" / "id_rsa.pub"), "-o", "json"))["properties"]
    assert by_key["userAccountSettings"]["adminUserSshPublicKey"] == public


def test_file_server_commands(batchai: Run, tmp_path: Path) -> None:
    batchai("workspace", "create", "-n", "az-ws5")
    config = tmp_path / "nfs.json"
    config.write_text(json.dumps({"properties": {
        "vmSize": "STANDARD_D2", "dataDisks": {"diskSizeInGB": 5, "diskCount": 2, "storageAccountType": "Standard_LRS"},
        "sshConfiguration": {"userAccountSettings": {"adminUserName": "fromfile", "adminUserPassword": "pw"}}}}))
    created = as_json(batchai("file-server", "create", "-w", "az-ws5", "-n", "fs1", "-f", str(config),
                              "--disk-size", "8", "-o", "json"))["properties"]
    assert created["dataDisks"]["diskSizeInGB"] == 8 and created["dataDisks"]["diskCount"] == 2
    assert created["sshConfiguration"]["userAccountSettings"]["adminUserName"] == "fromfile"
    assert created["mountSettings"]["mountPoint"]
    table = batchai("file-server", "list", "-w", "az-ws5").stdout
    assert "fs1" in table and "2 x 8 GB Standard_LRS" in table
    shown = batchai("file-server", "show", "-w", "az-ws5", "-n", "fs1").stdout
    assert re.search(r"^type\s+Microsoft.BatchAI/workspaces/fileServers$", shown, re.M)

    missing = batchai("file-server", "create", "-w", "az-ws5", "-n", "fs2", "-s", "STANDARD_D2", check=False)
    assert missing.exit_code == 2 and "--disk-count, --disk-size, --storage-sku" in missing.stderr
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps({"properties": {"vmSize": "X", "dataDisk": {}}}))
    refused = batchai("file-server", "create", "-w", "az-ws5", "-n", "fs3", "-f", str(bad_file), check=False)
    assert refused.exit_code == 1 and "did you mean 'dataDisks'" in refused.stderr

    batchai("file-server", "delete", "-w", "az-ws5", "-n", "fs1", "-y")
    assert as_json(batchai("file-server", "list", "-w", "az-ws5", "-o", "json")) == []
    gone = batchai("file-server", "show", "-w", "az-ws5", "-n", "fs1", check=False)
    assert gone.exit_code == 1 and "FileServerNotFound" in gone.stderr


def test_list_usages_counts_clusters(batchai: Run) -> None:
    def clusters() -> int:
        usages = as_json(batchai("list-usages", "-l", "eastus", "-o", "json"))
        return next(u["currentValue"] for u in usages if u["name"]["value"] == "Clusters")

    batchai("workspace", "create", "-n", "az-ws6")
    before = clusters()
    batchai("cluster", "create", "-w", "az-ws6", "-n", "u1", "-s", "STANDARD_D1", "-t", "0", "-p", "pw")
    assert clusters() == before + 1
    table = batchai("list-usages").stdout
    limit = int(os.environ.get("BATCHAI_QUOTA_CLUSTERS", "20"))
    assert re.search(rf"Clusters\s.*\s{before + 1}\s.*\s{limit}\b", table), table
    assert "Total Cluster Low Priority Regional vCPUs" in table


def test_cluster_file_list_shows_each_nodes_setup_output(batchai: Run) -> None:
    batchai("workspace", "create", "-n", "az-ws7")
    batchai("cluster", "create", "-w", "az-ws7", "-n", "c", "-s", "STANDARD_D1", "-t", "0", "-p", "pw",
            "--setup-task", "echo hi", "--setup-task-output", "$AZ_BATCHAI_MOUNT_ROOT/logs")
    container = storage.container(Settings.from_env().storage_connection_string, storage.C_OUTPUTS)
    container.upload_blob(f"{storage.setup_output_prefix('az-ws7', 'c', 'n1')}/stdout.txt", b"hi\n", overwrite=True)
    nodes = as_json(batchai("cluster", "file", "list", "-w", "az-ws7", "-c", "c", "-o", "json"))
    assert [(f["name"], f["fileType"]) for f in nodes] == [("n1", "directory")]
    assert re.search(r"n1\s.*\syes\b", batchai("cluster", "file", "list", "-w", "az-ws7", "-c", "c").stdout)
    files = as_json(batchai("cluster", "file", "list", "-w", "az-ws7", "-c", "c", "-p", "n1", "--expiry", "5",
                            "-o", "json"))
    assert [f["name"] for f in files] == ["stdout.txt"] and files[0]["properties"]["contentLength"] == 3
    assert "ClusterNotFound" in batchai("cluster", "file", "list", "-w", "az-ws7", "-c", "x", check=False).stderr
