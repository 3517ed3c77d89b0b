"""`az batchai` verbs against the whole local stack, where nodes really run: a cluster's nodes and their setup
task output, a job's nodes while it runs, its output files by name in a subdirectory, usages of running
nodes, and deleting a running job without waiting."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from shared.adapters import local_paths
from shared.cli.main import app
from tests.polling import wait_until

pytestmark = pytest.mark.slow

WS, EXP, CLUSTER = "az-stack", "exp", "setup"
ACCOUNT, SHARE = "devstoreaccount1", "logs"
Cli = Callable[..., Result]


@pytest.fixture(scope="module")
def cli(local_stack: dict[str, Any]) -> Cli:
    runner = CliRunner()

    def run(*args: str, check: bool = True) -> Result:
        result = runner.invoke(app, ["--state-dir", str(local_stack["state_dir"]), *args])
        if check:
            assert result.exit_code == 0, f"{args}: {result.stdout}\n{result.stderr}\n{result.exception!r}"
        return result

    run("workspace", "create", "-n", WS)
    run("experiment", "create", "-w", WS, "-n", EXP)
    run("cluster", "create", "-w", WS, "-n", CLUSTER, "-s", "STANDARD_D1_V2", "-t", "1", "-u", "u", "-p", "p",
        "--afs-name", SHARE, "--setup-task", "echo set up on $(hostname); echo setup warning >&2",
        "--setup-task-output", "$AZ_BATCHAI_MOUNT_ROOT/afs")
    return run


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def share_dir(local_stack: dict[str, Any]) -> Path:
    """The emulated Azure File share the cluster mounts at $AZ_BATCHAI_MOUNT_ROOT/afs."""
    return local_paths.fileshare_dir(Path(local_stack["state_dir"]), ACCOUNT,
                                     f"https://{ACCOUNT}.file.core.windows.net/{SHARE}")


def test_cluster_nodes_and_their_setup_task_output(cli: Cli) -> None:
    nodes = wait_until(lambda: as_json(cli("cluster", "node", "list", "-w", WS, "-c", CLUSTER, "-o", "json")), 90,
                       "the cluster's node")
    assert len(nodes) == 1 and "ipAddress" not in nodes[0]  # a process node has no sshd to log in to
    node = nodes[0]["nodeId"]

    def setup_files() -> dict[str, Any]:
        listed = as_json(cli("cluster", "file", "list", "-w", WS, "-c", CLUSTER, "-p", node, "-o", "json"))
        files = {f["name"]: f for f in listed}
        return files if files.get("stdout.txt", {}).get("properties", {}).get("contentLength") else {}

    files = wait_until(setup_files, 90, "the setup task's output")
    assert [(d["name"], d["fileType"]) for d in as_json(cli("cluster", "file", "list", "-w", WS, "-c", CLUSTER,
                                                            "-o", "json"))] == [(node, "directory")]
    assert httpx.get(files["stdout.txt"]["downloadUrl"]).text.startswith("set up on ")
    assert httpx.get(files["stderr.txt"]["downloadUrl"]).text == "setup warning\n"


def test_job_nodes_output_files_and_usages(cli: Cli, local_stack: dict[str, Any], tmp_path: Path) -> None:
    go = share_dir(local_stack) / "go-files"
    command = ("mkdir -p $AZ_BATCHAI_OUTPUT_OUT/sub && echo deep inside > $AZ_BATCHAI_OUTPUT_OUT/sub/nested.txt; "
               "echo top > $AZ_BATCHAI_OUTPUT_OUT/top.txt; "
               "while [ ! -f $AZ_BATCHAI_MOUNT_ROOT/afs/go-files ]; do sleep 0.2; done")
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"properties": {
        "customToolkitSettings": {"commandLine": command}, "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/afs",
        "outputDirectories": [{"id": "OUT", "pathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/afs/out"}]}}))
    cli("job", "create", "-w", WS, "-e", EXP, "-n", "files", "-f", str(path), "-c", CLUSTER)

    def state() -> str:
        return as_json(cli("job", "show", "-w", WS, "-e", EXP, "-n", "files", "-o", "json"))[
            "properties"]["executionState"]

    wait_until(lambda: state() == "running", 120, "the job to run")
    nodes = as_json(cli("job", "node", "list", "-w", WS, "-e", EXP, "-j", "files", "-o", "json"))
    cluster_nodes = as_json(cli("cluster", "node", "list", "-w", WS, "-c", CLUSTER, "-o", "json"))
    assert [n["nodeId"] for n in nodes] == [n["nodeId"] for n in cluster_nodes]
    usages = {u["name"]["value"]: u for u in as_json(cli("list-usages", "-o", "json"))}
    assert usages["Total Cluster Dedicated Regional vCPUs"]["currentValue"] >= 1

    go.write_text("go\n")
    assert cli("job", "wait", "-w", WS, "-e", EXP, "-n", "files", "--interval", "0.5", check=False).exit_code == 0
    inner = as_json(cli("job", "file", "list", "-w", WS, "-e", EXP, "-j", "files", "-d", "OUT", "-p", "sub",
                        "-o", "json"))
    assert [f["name"] for f in inner] == ["nested.txt"]
    streamed = cli("job", "file", "stream", "-w", WS, "-e", EXP, "-j", "files", "-d", "OUT", "-p", "sub",
                   "-f", "nested.txt")
    assert streamed.stdout == "deep inside\n"


def test_deleting_a_running_job_without_waiting(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"properties": {"customToolkitSettings": {"commandLine": "sleep 600"},
                                               "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/afs"}}))
    cli("job", "create", "-w", WS, "-e", EXP, "-n", "forever", "-f", str(path), "-c", CLUSTER)

    def shown() -> dict[str, Any]:
        return as_json(cli("job", "show", "-w", WS, "-e", EXP, "-n", "forever", "-o", "json"))["properties"]

    wait_until(lambda: shown()["executionState"] == "running", 120, "the job to run")
    cli("job", "delete", "-w", WS, "-e", EXP, "-n", "forever", "-y", "--no-wait")
    after = cli("job", "show", "-w", WS, "-e", EXP, "-n", "forever", "-o", "json", check=False)
    # Accepted, not waited for: the job is being deleted (its task is stopping), or already gone.
    assert (after.exit_code == 0 and as_json(after)["properties"]["provisioningState"] == "deleting") or (
        after.exit_code == 1 and "JobNotFound" in after.stderr), after.stdout + after.stderr
    cli("job", "delete", "-w", WS, "-e", EXP, "-n", "forever", "-y")
    gone = cli("job", "show", "-w", WS, "-e", EXP, "-n", "forever", check=False)
    assert gone.exit_code == 1 and "JobNotFound" in gone.stderr
