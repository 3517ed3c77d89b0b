"""Distributed toolkits end to end on the local stack, in both topologies (on machines the ranks reach
each other over the stack's network, mpirun over ssh with the cluster's key): DDP, MPI, TensorFlow,
job preparation; and container jobs on podman (process topology)."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

import pytest
from azure.mgmt.batchai import models

from tests.containers.conftest import IMAGE, podman_url  # noqa: F401 - the podman fixture
from tests.e2e.conftest import EXP, MACHINES, PROCESSES, WS, Stack

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def gang(two_nodes: Stack) -> Stack:
    return two_nodes


def script(s: Stack, name: str) -> str:
    """A fixture script copied to the cluster share; its path on nodes."""
    here, there = s.scratch("scripts")
    shutil.copy(FIXTURES / name, here / name)
    return f"{there}/{name}"


def run(s: Stack, name: str, **settings: object) -> models.Job:
    params = models.JobCreateParameters(cluster=models.ResourceId(id=s.cluster_id(WS, "two")),
                                        std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/logs", **settings)
    s.client.jobs.begin_create(s.rg, WS, EXP, name, params).result()
    return s.wait_job(WS, EXP, name, timeout=900)


def stdout_of(s: Stack, job: str) -> str:
    files = s.output_files(WS, EXP, job)
    return "".join(s.download(f.download_url) for n, f in sorted(files.items()) if n.startswith("stdout"))


def test_two_node_pytorch_ddp_trains_on_both_ranks(gang: Stack) -> None:
    job = run(gang, "ddp", node_count=2, py_torch_settings=models.PyTorchSettings(
        python_script_file_path=script(gang, "ddp_train.py"), python_interpreter_path=gang.torch_python,
        communication_backend="gloo"))
    assert job.execution_state == "succeeded", job.execution_info
    out = stdout_of(gang, "ddp")
    assert "rank=0 world_size=2" in out and "rank=1 world_size=2" in out, out
    assert "in_sync=False" not in out


def test_two_node_custom_mpi_runs_mpirun_over_both_nodes(gang: Stack) -> None:
    job = run(gang, "mpi", node_count=2, custom_mpi_settings=models.CustomMpiSettings(
        command_line='echo "mpi rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE"', process_count=2))
    assert job.execution_state == "succeeded", job.execution_info
    out = stdout_of(gang, "mpi")
    assert "mpi rank 0 of 2" in out and "mpi rank 1 of 2" in out, out


def test_tensorflow_ps_and_workers_see_their_tf_config(gang: Stack) -> None:
    job = run(gang, "tf", node_count=2, tensor_flow_settings=models.TensorFlowSettings(
        python_script_file_path=script(gang, "tf_task.py"), python_interpreter_path=gang.python,
        parameter_server_count=1, worker_count=2, worker_command_line_args="--await-ps",
        master_command_line_args="--await-ps"))
    assert job.execution_state == "succeeded", job.execution_info
    records = [json.loads(line) for line in stdout_of(gang, "tf").splitlines() if line.startswith("{")]
    seen = {(r["type"], r["index"]) for r in records}
    assert seen == {("worker", 0), ("worker", 1), ("ps", 0)}, records
    for r in records:
        assert r["task_index"] == str(r["index"])
        assert len(r["worker_hosts"].split(",")) == 2 and len(r["ps_hosts"].split(",")) == 1
    endpoints = records[0]["worker_hosts"].split(",") + records[0]["ps_hosts"].split(",")
    assert len(set(endpoints)) == 3, endpoints  # every process listens on its own address
    if gang.topology == MACHINES:  # two machines: their private addresses, not loopback
        hosts = {h.rsplit(":", 1)[0] for h in endpoints}
        assert len(hosts) == 2 and all(not ipaddress.ip_address(h).is_loopback for h in hosts), hosts


def test_failing_job_preparation_fails_the_job_and_keeps_its_output(gang: Stack) -> None:
    job = run(gang, "prep", custom_toolkit_settings=models.CustomToolkitSettings(command_line="echo main ran"),
              job_preparation=models.JobPreparation(command_line="echo preparing; echo broken >&2; exit 4"))
    assert job.execution_state == "failed"
    assert any(e.code == "JobPreparationFailed" for e in job.execution_info.errors or []), job.execution_info
    files = gang.output_files(WS, EXP, "prep")
    assert "stdout.txt" not in files  # the toolkit command never ran
    assert gang.download(files["stdout-job_prep.txt"].download_url).strip() == "preparing"
    assert gang.download(files["stderr-job_prep.txt"].download_url).strip() == "broken"


@pytest.mark.parametrize("stack", [PROCESSES], indirect=True)  # machines run no container engine
def test_container_job_on_podman_sees_env_and_mounts_and_returns_its_exit_code(
        gang: Stack, podman_url: str) -> None:  # noqa: F811
    container = models.ContainerSettings(image_source_registry=models.ImageSourceRegistry(image=IMAGE))
    job = run(gang, "box", container_settings=container,
              environment_variables=[models.EnvironmentVariable(name="GREETING", value="hello")],
              output_directories=[models.OutputDirectory(id="OUT", path_prefix="$AZ_BATCHAI_JOB_TEMP")],
              custom_toolkit_settings=models.CustomToolkitSettings(
                  command_line='echo "greeting=$GREETING"; test -d "$AZ_BATCHAI_MOUNT_ROOT" && echo mounted; '
                               'echo from-container > "$AZ_BATCHAI_OUTPUT_OUT/result.txt"; exit 0'))
    assert job.execution_state == "succeeded", job.execution_info
    out = stdout_of(gang, "box")
    assert "greeting=hello" in out and "mounted" in out
    files = gang.output_files(WS, EXP, "box", directory_id="OUT")
    assert gang.download(files["result.txt"].download_url).strip() == "from-container"

    failing = run(gang, "box3", container_settings=container,
                  custom_toolkit_settings=models.CustomToolkitSettings(command_line="exit 3"))
    assert failing.execution_state == "failed" and failing.execution_info.exit_code == 3
