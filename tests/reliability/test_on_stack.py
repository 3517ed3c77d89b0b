"""Reliability on the whole local stack (process topology), through the official SDK: a deletion
nobody polls still completes, and the issue's table rows that need a running stack."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.batchai import models

from tests.e2e.conftest import Stack
from tests.polling import wait_until

EXP = "rel"


def processes_with(marker: str) -> list[int]:
    """The pids of processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # it ended while we looked
    return found


@pytest.fixture(scope="module")
def one_node(stack: Stack) -> tuple[Stack, str]:
    """A workspace of its own with experiment `rel` and a 1-node cluster `c`, its node idle."""
    ws = f"rel-{uuid.uuid4().hex[:6]}"
    stack.workspace(ws)
    stack.client.experiments.begin_create(stack.rg, ws, EXP).result()
    stack.manual_cluster(ws, "c", 1)
    stack.idle_nodes(ws, "c", 1)
    return stack, ws


def test_a_running_job_deleted_and_never_polled_is_gone_with_its_processes(one_node: tuple[Stack, str]) -> None:
    stack, ws = one_node
    marker = f"deleted-unpolled-{uuid.uuid4().hex[:8]}"
    stack.submit(ws, EXP, "unpolled", "c", f"{stack.python} -c 'import time; time.sleep(600)' {marker}")
    wait_until(lambda: stack.client.jobs.get(stack.rg, ws, EXP, "unpolled").execution_state == "running"
               and processes_with(marker), 120, what="the job's task to run")

    stack.client.jobs.begin_delete(stack.rg, ws, EXP, "unpolled", polling=False)  # the poller never polls

    def gone() -> bool:
        try:
            stack.client.jobs.get(stack.rg, ws, EXP, "unpolled")
        except ResourceNotFoundError:
            return True
        return False

    wait_until(gone, 60, what="the deleted job to be gone")
    assert processes_with(marker) == []  # its task was stopped before the job could go


def test_a_command_line_of_200_kb_runs(one_node: tuple[Stack, str]) -> None:
    """The API takes command lines up to its 256 KiB body limit; node messages are references, so the
    job is dispatched and runs (it was once shown running forever: its message could not be sent)."""
    stack, ws = one_node
    padding = "x" * 200_000
    stack.submit(ws, EXP, "long-command", "c", f"echo long-command-ran; : {padding}")
    job = stack.wait_job(ws, EXP, "long-command", timeout=120)
    assert job.execution_state == "succeeded", job.execution_info
    stdout = stack.output_files(ws, EXP, "long-command")["stdout.txt"]
    assert stack.download(stdout.download_url).strip() == "long-command-ran"


def test_a_job_needing_more_nodes_than_its_cluster_can_have_is_refused(one_node: tuple[Stack, str]) -> None:
    """nodeCount 1,000,000 on a small cluster is refused with a reason, never queued forever."""
    stack, ws = one_node
    params = models.JobCreateParameters(cluster=models.ResourceId(id=stack.cluster_id(ws, "c")), node_count=1_000_000,
                                        std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/logs",
                                        custom_toolkit_settings=models.CustomToolkitSettings(command_line="true"))
    with pytest.raises(Exception) as refused:
        stack.client.jobs.begin_create(stack.rg, ws, EXP, "huge", params).result()
    assert getattr(refused.value, "status_code", None) == 400, refused.value
    assert "nodeCount" in str(refused.value)
    with pytest.raises(ResourceNotFoundError):
        stack.client.jobs.get(stack.rg, ws, EXP, "huge")


def test_a_cluster_of_100000_nodes_is_refused(one_node: tuple[Stack, str]) -> None:
    """The API bounds targetNodeCount (the provider also starts at most a few agents per tick)."""
    stack, ws = one_node
    params = models.ClusterCreateParameters(
        vm_size="STANDARD_D1_V2", user_account_settings=models.UserAccountSettings(admin_user_name="u"),
        scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=100_000)))
    with pytest.raises(Exception) as refused:
        stack.client.clusters.begin_create(stack.rg, ws, "huge", params).result()
    assert getattr(refused.value, "status_code", None) == 400, refused.value
    assert "targetNodeCount" in str(refused.value)
    with pytest.raises(ResourceNotFoundError):
        stack.client.clusters.get(stack.rg, ws, "huge")
