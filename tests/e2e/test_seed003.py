"""The documentation's flagship sample, seed 003, as its job file has it, on both topologies: a
TensorFlow job of 1 parameter server and 2 workers on 2 nodes, with a job-level Azure file share
mounted at `afs` (the script, stdout/stderr and the model live there) and a job-level blob container
at `bfs` (the dataset), through the official SDK."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

import pytest
from azure.mgmt.batchai import models
from azure.storage.blob import BlobServiceClient

from shared.adapters import local_paths
from tests.e2e.conftest import EXP, MACHINES, WS, Stack

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_seed_003_tensorflow_job_with_job_level_mounts(two_nodes: Stack) -> None:
    s = two_nodes
    share_url = f"https://{s.account}.file.core.windows.net/seed003"
    share = local_paths.fileshare_dir(s.state_dir, s.account, share_url)
    share.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "seed003_task.py", share / "seed003_task.py")
    blobs = BlobServiceClient.from_connection_string(s.endpoint["storage_connection_string"])
    container = blobs.get_container_client("seed003data")
    if not container.exists():
        container.create_container()
    container.upload_blob("dataset/train.txt", b"digits 0-9\nmore\n", overwrite=True)
    credentials = models.AzureStorageCredentialsInfo(account_key=s.account_key)
    params = models.JobCreateParameters(
        cluster=models.ResourceId(id=s.cluster_id(WS, "two")), node_count=2,
        std_out_err_path_prefix="$AZ_BATCHAI_JOB_MOUNT_ROOT/afs",
        mount_volumes=models.MountVolumes(
            azure_file_shares=[models.AzureFileShareReference(
                account_name=s.account, azure_file_url=share_url, relative_mount_path="afs",
                credentials=credentials)],
            azure_blob_file_systems=[models.AzureBlobFileSystemReference(
                account_name=s.account, container_name="seed003data", relative_mount_path="bfs",
                credentials=credentials)]),
        output_directories=[models.OutputDirectory(id="MODEL", path_prefix="$AZ_BATCHAI_JOB_MOUNT_ROOT/afs")],
        tensor_flow_settings=models.TensorFlowSettings(
            python_script_file_path="$AZ_BATCHAI_JOB_MOUNT_ROOT/afs/seed003_task.py",
            python_interpreter_path=s.python, parameter_server_count=1, worker_count=2))
    s.client.jobs.begin_create(s.rg, WS, EXP, "seed003", params).result()
    job = s.wait_job(WS, EXP, "seed003", timeout=900)
    assert job.execution_state == "succeeded", [(e.code, e.message) for e in job.execution_info.errors or []]

    files = s.output_files(WS, EXP, "seed003")
    assert {"stdout-wk-0.txt", "stdout-wk-1.txt", "stdout-ps-0.txt"} <= set(files), sorted(files)
    records = {}
    for name, role in (("stdout-wk-0.txt", ("worker", 0)), ("stdout-wk-1.txt", ("worker", 1)),
                       ("stdout-ps-0.txt", ("ps", 0))):
        lines = s.download(files[name].download_url).splitlines()
        assert len(lines) == 1, (name, lines)  # only its own process's output
        record = json.loads(lines[0])
        assert (record["type"], record["index"]) == role
        records[role] = record
    workers = records["worker", 0]["worker_hosts"].split(",")
    ps = records["worker", 0]["ps_hosts"].split(",")
    assert len(workers) == 2 and len(ps) == 1
    for record in records.values():
        assert record["dataset"] == "digits 0-9"  # the dataset, through the job's blob mount
        assert record["tf_config"]["cluster"] == {"worker": workers, "ps": ps}
    endpoints = workers + ps
    assert len(set(endpoints)) == 3, endpoints  # every process listens on its own address
    if s.topology == MACHINES:  # two machines: their private addresses, not loopback
        hosts = {h.rsplit(":", 1)[0] for h in endpoints}
        assert len(hosts) == 2 and all(not ipaddress.ip_address(h).is_loopback for h in hosts), hosts

    # stdout/stderr and the model are on the job's file share, under Batch AI's path.
    on_share = {p.name for p in share.rglob("*") if p.is_file()}
    assert {"stdout-wk-0.txt", "stdout-wk-1.txt", "stdout-ps-0.txt", "model.txt"} <= on_share, on_share
    [model] = share.rglob("model.txt")
    assert model.read_text() == "trained on digits 0-9"
    assert "/jobs/seed003/" in model.as_posix() and "/outputs" in model.as_posix()
