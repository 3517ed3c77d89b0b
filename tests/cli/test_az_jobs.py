"""`batchai job ...` with `az batchai job` flags against the real API: create with job-level mounts, list,
show, terminate, delete, and output files by their names in a subdirectory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.adapters import storage
from shared.config import Settings
from tests.cli.conftest import Run, as_json
from tests.polling import wait_until

WS, EXP = "az-jobs", "exp"
ACCOUNT = "devstoreaccount1"


@pytest.fixture(scope="module")
def workspace(state_dir: Path) -> str:
    from typer.testing import CliRunner

    from shared.cli.main import app

    runner = CliRunner()
    for args in (["workspace", "create", "-n", WS], ["experiment", "create", "-w", WS, "-n", EXP],
                 ["cluster", "create", "-w", WS, "-n", "gpu", "-s", "STANDARD_NC6", "-t", "0", "-p", "pw"],
                 ["file-server", "create", "-w", WS, "-n", "nfs", "-s", "STANDARD_D2", "--disk-count", "1",
                  "--disk-size", "1", "--storage-sku", "Standard_LRS", "-p", "pw"]):
        result = runner.invoke(app, ["--state-dir", str(state_dir), *args])
        assert result.exit_code == 0, result.stderr
    return WS


def job_file(directory: Path, **properties: object) -> str:
    directory.mkdir(exist_ok=True)
    path = directory / "job.json"
    path.write_text(json.dumps({"properties": {"customToolkitSettings": {"commandLine": "true"},
                                               "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs", **properties}}))
    return str(path)


def test_job_create_with_job_level_mounts(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path, mountVolumes={"azureFileShares": [
        {"azureFileUrl": "https://<AZURE_BATCHAI_STORAGE_ACCOUNT>.file.core.windows.net/data",
         "relativeMountPath": "data"}]})
    created = as_json(batchai("job", "create", "-w", workspace, "-e", EXP, "-n", "m1", "-f", path, "-c", "gpu",
                              "--nfs", "nfs", "--afs-name", "scripts", "--afs-mount-path", "s", "--bfs-name", "in",
                              "--storage-account-name", ACCOUNT, "--storage-account-key", "k3y", "-o", "json"))
    volumes = created["properties"]["mountVolumes"]
    assert [(v["azureFileUrl"], v["relativeMountPath"]) for v in volumes["azureFileShares"]] == [
        (f"https://{ACCOUNT}.file.core.windows.net/data", "data"),
        (f"https://{ACCOUNT}.file.core.windows.net/scripts", "s")]
    assert [(v["containerName"], v["relativeMountPath"]) for v in volumes["azureBlobFileSystems"]] == [("in", "bfs")]
    assert volumes["fileServers"][0]["fileServer"]["id"].endswith(f"/workspaces/{workspace}/fileServers/nfs")
    assert volumes["fileServers"][0]["relativeMountPath"] == "nfs"
    assert created["properties"]["cluster"]["id"].endswith(f"/workspaces/{workspace}/clusters/gpu")

    plain = job_file(tmp_path / "plain")
    no_key = batchai("job", "create", "-w", workspace, "-e", EXP, "-n", "m2", "-f", plain, "-c", "gpu",
                     "--afs-name", "x", "--storage-account-name", "otheraccount", check=False)
    assert no_key.exit_code == 2 and "needs the key of storage account otheraccount" in no_key.stderr, no_key.stderr
    assert "JobNotFound" in batchai("job", "show", "-w", workspace, "-e", EXP, "-n", "m2", check=False).stderr


def test_job_list_show_terminate_delete(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path)
    batchai("job", "create", "-w", workspace, "-e", EXP, "-n", "t1", "-f", path, "-c", "gpu")
    batchai("job", "create", "-w", workspace, "-e", EXP, "-n", "t2", "-f", path, "-c", "gpu")
    listed = {j["name"] for j in as_json(batchai("job", "list", "-w", workspace, "-e", EXP, "-o", "json"))}
    assert {"t1", "t2"} <= listed
    assert as_json(batchai("job", "show", "-w", workspace, "-e", EXP, "-n", "t1", "-o", "json"))[
        "properties"]["executionState"] == "queued"

    batchai("job", "terminate", "-w", workspace, "-e", EXP, "-n", "t1", "-y")
    ended = as_json(batchai("job", "show", "-w", workspace, "-e", EXP, "-n", "t1", "-o", "json"))["properties"]
    assert ended["executionState"] == "failed" and ended["executionInfo"]["errors"][0]["code"] == "JobTerminated"
    waited = batchai("job", "wait", "-w", workspace, "-e", EXP, "-n", "t1", check=False)
    assert waited.exit_code == 1 and "JobTerminated" in waited.stderr

    batchai("job", "delete", "-w", workspace, "-e", EXP, "-n", "t1", "-y")
    batchai("job", "delete", "-w", workspace, "-e", EXP, "-n", "t2", "-y", "--no-wait")  # accepted, not waited for
    wait_until(lambda: "JobNotFound" in batchai("job", "show", "-w", workspace, "-e", EXP, "-n", "t2",
                                                check=False).stderr, 120, "t2 to be deleted")
    for name in ("t1", "t2"):
        gone = batchai("job", "show", "-w", workspace, "-e", EXP, "-n", name, check=False)
        assert gone.exit_code == 1 and "JobNotFound" in gone.stderr
    batchai("job", "create", "-w", workspace, "-e", EXP, "-n", "t3", "-f", path, "-c", "gpu")
    assert as_json(batchai("job", "node", "list", "-w", workspace, "-e", EXP, "-j", "t3", "-o", "json")) == []
    missing = batchai("job", "node", "list", "-w", workspace, "-e", EXP, "-j", "nope", check=False)
    assert missing.exit_code == 1 and "JobNotFound" in missing.stderr


def test_output_files_in_a_subdirectory_by_their_names(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path, outputDirectories=[{"id": "OUT", "pathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/out"}])
    job = as_json(batchai("job", "create", "-w", workspace, "-e", EXP, "-n", "files", "-f", path, "-c", "gpu",
                          "-o", "json"))
    prefix = storage.output_prefix(workspace, EXP, "files", job["properties"]["jobOutputDirectoryPathSegment"])
    container = storage.container(Settings.from_env().storage_connection_string, storage.C_OUTPUTS)
    container.upload_blob(f"{prefix}/outputs/OUT/sub/nested.txt", b"deep inside\n", overwrite=True)
    container.upload_blob(f"{prefix}/outputs/OUT/top.txt", b"top\n", overwrite=True)
    batchai("job", "terminate", "-w", workspace, "-e", EXP, "-n", "files", "-y")  # ended: streams stop at the end

    top = as_json(batchai("job", "file", "list", "-w", workspace, "-e", EXP, "-j", "files", "-d", "OUT",
                          "-o", "json"))
    assert {(f["name"], f["fileType"]) for f in top} == {("top.txt", "file"), ("sub", "directory")}
    inner = as_json(batchai("job", "file", "list", "-w", workspace, "-e", EXP, "-j", "files", "-d", "OUT",
                            "-p", "sub", "-o", "json"))
    assert [f["name"] for f in inner] == ["nested.txt"]
    streamed = batchai("job", "file", "stream", "-w", workspace, "-e", EXP, "-j", "files", "-d", "OUT", "-p", "sub",
                       "-f", "nested.txt")
    assert streamed.stdout == "deep inside\n"
    absent = batchai("job", "file", "stream", "-w", workspace, "-e", EXP, "-j", "files", "-d", "OUT",
                     "-f", "nested.txt", check=False)
    assert absent.exit_code == 1 and "without nested.txt" in absent.stderr
