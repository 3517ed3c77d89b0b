"""GPU slots end to end on the process topology, through the CLI: a gpu-slots cluster of a 2-GPU size
(its process nodes are declared the size's GPUs) that scales from zero runs two 1-GPU jobs at the same
time on one node, each seeing its own GPU; the autoscaler, counting slots, starts one node for both."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from shared.adapters import sched_store
from shared.cli.main import app
from tests.e2e.conftest import PROCESSES, Stack
from tests.polling import wait_until

WAIT_ITERATIONS = 3000  # x 0.2 s: how long a job waits for the other before it fails


def cli(stack: Stack, *args: str) -> Result:
    result = CliRunner().invoke(app, ["--state-dir", str(stack.state_dir), *args])
    assert result.exit_code == 0, f"{args}: {result.stdout}\n{result.stderr}\n{result.exception!r}"
    return result


def meeting(scratch: str, me: str, other: str) -> str:
    """Print what the job sees of its GPUs, then meet the other job: say it is here, and wait (with a
    deadline) until the other is too. Both succeed only if they ran at the same time."""
    return (f'echo "cuda=[$CUDA_VISIBLE_DEVICES] gpus=[$AZ_BATCHAI_NUM_GPUS]"; touch {scratch}/{me}; i=0; '
            f'until [ -e {scratch}/{other} ]; do i=$((i+1)); '
            f'if [ $i -gt {WAIT_ITERATIONS} ]; then echo "{other} never came" >&2; exit 7; fi; sleep 0.2; done')


@pytest.mark.parametrize("stack", [PROCESSES], indirect=True)
def test_two_1_gpu_jobs_share_a_2_gpu_node(stack: Stack, tmp_path: Path) -> None:
    ws, exp, cluster = f"gpus-{uuid.uuid4().hex[:6]}", "exp", "packed"
    cli(stack, "workspace", "create", ws)
    cli(stack, "experiment", "create", ws, exp)
    cluster_file = tmp_path / "cluster.json"
    cluster_file.write_text(json.dumps({"properties": {"nodeSetup": {"mountVolumes": {"azureFileShares": [{
        "accountName": stack.account, "azureFileUrl": stack.share_url, "relativeMountPath": "share",
        "credentials": {"accountKey": stack.account_key}}]}}}}))
    cli(stack, "cluster", "create", ws, cluster, "-f", str(cluster_file), "--vm-size", "STANDARD_NC12",
        "--min", "0", "--max", "2", "--packing", "gpu-slots", "-u", "demo", "-p", "x")

    _, scratch = stack.scratch("gpus")
    for me, other in (("a", "b"), ("b", "a")):
        job_file = tmp_path / f"{me}.json"
        job_file.write_text(json.dumps({"properties": {
            "customToolkitSettings": {"commandLine": meeting(scratch, me, other)},
            "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs"}}))
        cli(stack, "job", "create", ws, exp, me, "-f", str(job_file), "--cluster", cluster, "--gpus-per-node", "1")

    def both_running() -> bool:
        return all(stack.client.jobs.get(stack.rg, ws, exp, j).execution_state in ("running", "succeeded")
                   for j in "ab")

    wait_until(both_running, 600, what="both jobs to run")
    key = stack.cluster_key(ws, cluster)
    nodes = [r for r in sched_store.partition(stack.endpoint["storage_connection_string"], key)
             if r["RowKey"].startswith(sched_store.NODE)]
    assert len(nodes) == 1, [r["RowKey"] for r in nodes]  # slots counted: one node for two 1-GPU jobs
    assert nodes[0]["gpus"] == 2  # declared to the node by its size, reported at registration
    [node_id] = [r["RowKey"][len(sched_store.NODE):] for r in nodes]
    for j in "ab":
        assert [n.node_id for n in stack.client.jobs.list_remote_login_information(stack.rg, ws, exp, j)] \
            == [node_id]

    seen = {}
    for j in "ab":
        job = stack.wait_job(ws, exp, j)
        stdout = stack.download(stack.output_files(ws, exp, j)["stdout.txt"].download_url)
        assert job.execution_state == "succeeded", stdout
        match = re.search(r"cuda=\[(.*)\] gpus=\[(.*)\]", stdout)
        assert match is not None, stdout
        seen[j] = match.groups()
    assert sorted(seen.values()) == [("0", "1"), ("1", "1")]  # disjoint: each its own GPU, one each
