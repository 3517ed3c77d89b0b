"""Jobs run end to end on the local stack, in both topologies: scheduling, nodes, the node agent, logs,
outputs."""

from __future__ import annotations

import pytest
from azure.mgmt.batchai import models

from tests.e2e.conftest import EXP, WS, Stack, wait_until

pytestmark = pytest.mark.slow


def test_env_job_succeeds_with_outputs_downloadable(two_nodes: Stack) -> None:
    s = two_nodes
    s.submit(WS, EXP, "env", "two", 'env | sort; echo trained > "$AZ_BATCHAI_OUTPUT_MODEL/m.txt"',
             output_directories=[models.OutputDirectory(id="MODEL", path_prefix="$AZ_BATCHAI_MOUNT_ROOT/out")])
    job = s.wait_job(WS, EXP, "env")
    assert job.execution_state == "succeeded", job.execution_info
    assert job.execution_info.exit_code == 0
    assert job.execution_info.start_time <= job.execution_info.end_time
    stdout = s.download(s.output_files(WS, EXP, "env")["stdout.txt"].download_url)
    for var in ("AZ_BATCHAI_MOUNT_ROOT", "AZ_BATCHAI_JOB_MOUNT_ROOT", "AZ_BATCHAI_OUTPUT_MODEL",
                "AZ_BATCHAI_JOB_TEMP", "AZ_BATCHAI_SHARED_JOB_TEMP", "AZ_BATCHAI_STDOUTERR_DIR",
                "AZ_BATCHAI_TASK_INDEX", "AZ_BATCHAI_NUM_GPUS"):
        assert f"{var}=" in stdout, var
    model = s.output_files(WS, EXP, "env", directory_id="MODEL")
    assert s.download(model["m.txt"].download_url).strip() == "trained"


def test_nonzero_exit_fails_with_the_exit_code(two_nodes: Stack) -> None:
    two_nodes.submit(WS, EXP, "exit3", "two", "echo about to fail; exit 3")
    job = two_nodes.wait_job(WS, EXP, "exit3")
    assert job.execution_state == "failed"
    assert job.execution_info.exit_code == 3


def test_stdout_is_readable_while_the_job_runs(two_nodes: Stack) -> None:
    s = two_nodes
    s.submit(WS, EXP, "long", "two", "echo tick 1; echo tick 2; sleep 600")  # runs until terminated

    def partial_stdout() -> str | None:
        job = s.client.jobs.get(s.rg, WS, EXP, "long")
        if job.execution_state != "running":
            return None
        files = s.output_files(WS, EXP, "long")
        if "stdout.txt" not in files:
            return None
        text = s.download(files["stdout.txt"].download_url)
        return text if "tick 2" in text else None

    text = wait_until(partial_stdout, 300, what="stdout of the running job")
    assert text.splitlines()[:2] == ["tick 1", "tick 2"]
    assert s.client.jobs.get(s.rg, WS, EXP, "long").execution_state == "running"
    s.client.jobs.begin_terminate(s.rg, WS, EXP, "long").result()
    job = s.wait_job(WS, EXP, "long")
    assert job.execution_state == "failed"
    assert any("terminat" in (e.code or "").lower() for e in job.execution_info.errors or [])


def test_two_node_job_gets_task_index_0_and_1(two_nodes: Stack) -> None:
    s = two_nodes
    params = models.JobCreateParameters(
        cluster=models.ResourceId(id=s.cluster_id(WS, "two")), node_count=2,
        std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/logs",
        py_torch_settings=models.PyTorchSettings(
            python_script_file_path="-c",
            command_line_args="'import os; print(\"rank\", os.environ[\"AZ_BATCHAI_TASK_INDEX\"])'",
            python_interpreter_path="python3"))
    s.client.jobs.begin_create(s.rg, WS, EXP, "gang", params).result()
    job = s.wait_job(WS, EXP, "gang")
    assert job.execution_state == "succeeded", job.execution_info
    files = s.output_files(WS, EXP, "gang")
    text = "".join(s.download(f.download_url) for name, f in files.items() if name.startswith("stdout"))
    assert "rank 0" in text and "rank 1" in text


def test_priority_order_on_one_node(stack: Stack) -> None:
    s = stack
    s.workspace("prio")
    s.client.experiments.begin_create(s.rg, "prio", "p").result()
    s.manual_cluster("prio", "one", 1)
    s.idle_nodes("prio", "one", 1)
    here, there = s.scratch("prio")
    here.chmod(0o777)  # the blocker runs as an account of its own
    s.submit("prio", "p", "blocker", "one", f'touch "{there}/running"; while [ ! -e "{there}/go" ]; do sleep 0.1; done')
    wait_until(lambda: (here / "running").exists(), 300, what="the blocker to run")
    for name, priority in (("low", "low"), ("normal", "normal"), ("high1", "high"), ("high2", "high")):
        s.submit("prio", "p", name, "one", "true", scheduling_priority=priority)
    (here / "go").touch()  # all four wait behind it, however long their submissions took
    jobs = {n: s.wait_job("prio", "p", n) for n in ("low", "normal", "high1", "high2")}
    order = sorted(jobs, key=lambda n: jobs[n].execution_info.start_time)
    assert order == ["high1", "high2", "normal", "low"]
