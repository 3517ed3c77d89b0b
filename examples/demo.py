"""The reference workflow, through the official azure-mgmt-batchai SDK: `python -m examples.demo`.

Starts the local stack unless it is up (and leaves it running), then: creates a workspace, uploads the
training script to an Azure File share, creates a manual-scale cluster of 2 nodes that mounts the share
at `afs`, an experiment and a custom-toolkit training job; follows the job's stdout through its
listOutputFiles download URL, downloads the trained model through its URL, checks its accuracy, and
lists what it created. Exits 0 only when the job succeeded and the model was downloaded and loaded.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.batchai import BatchAI, models

from examples.digits import train
from shared.adapters.local_paths import fileshare_dir
from shared.cli.context import StaticTokenCredential, as_mapping
from shared.cli.job_files import RangeReader
from shared.cli.specfiles import storage_account_from_connection_string

WORKSPACE, CLUSTER, EXPERIMENT = "demo", "cpu2", "digits"
SHARE = "batchaidemo"
EPOCHS = 8
JOB_DEADLINE_S = 150.0


def say(text: str) -> None:
    print(text, flush=True)


def ensure_stack(state_dir: Path) -> dict[str, Any]:
    """The running stack's endpoint; starts the stack when none answers."""
    from shared.localstack.stack import read_endpoint, start_stack

    endpoint = as_mapping(read_endpoint(state_dir))
    if endpoint and answers(endpoint):
        say(f"local stack already up at {endpoint['url']}")
        return endpoint
    say(f"starting the local stack (state in {state_dir}) ...")
    return as_mapping(start_stack(state_dir))


def answers(endpoint: dict[str, Any]) -> bool:
    try:
        httpx.get(f"{endpoint['url'].rstrip('/')}/healthz", verify=endpoint.get("ca_file") or True, timeout=5)
    except httpx.HTTPError:
        return False
    return True


def upload_script(state_dir: Path, account: str, share_url: str) -> Path:
    """Locally an Azure File share is a directory: copy the script in, as `azcopy` would upload it."""
    target = fileshare_dir(state_dir, account, share_url) / "scripts" / "train.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(train.__file__, target)
    return target


def ensure_cluster(client: BatchAI, rg: str, account: str, key: str | None, share_url: str) -> models.Cluster:
    try:
        return client.clusters.get(rg, WORKSPACE, CLUSTER)
    except ResourceNotFoundError:
        pass
    params = models.ClusterCreateParameters(
        vm_size="STANDARD_D1_V2",
        scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=2)),
        user_account_settings=models.UserAccountSettings(admin_user_name="demo", admin_user_password="Demo-pass-1"),
        node_setup=models.NodeSetup(mount_volumes=models.MountVolumes(azure_file_shares=[
            models.AzureFileShareReference(
                account_name=account, azure_file_url=share_url, relative_mount_path="afs",
                credentials=models.AzureStorageCredentialsInfo(account_key=key))])))
    return client.clusters.begin_create(rg, WORKSPACE, CLUSTER, params).result()


def submit(client: BatchAI, rg: str, cluster: models.Cluster, job_name: str) -> models.Job:
    command = f"{sys.executable} $AZ_BATCHAI_MOUNT_ROOT/afs/scripts/train.py --epochs {EPOCHS}"
    params = models.JobCreateParameters(
        cluster=models.ResourceId(id=cluster.id), node_count=1,
        std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/logs",
        output_directories=[models.OutputDirectory(id="MODEL", path_prefix="$AZ_BATCHAI_MOUNT_ROOT/outputs")],
        custom_toolkit_settings=models.CustomToolkitSettings(command_line=command))
    return client.jobs.begin_create(rg, WORKSPACE, EXPERIMENT, job_name, params).result()


def output_files(client: BatchAI, rg: str, job_name: str, directory_id: str) -> dict[str, models.File]:
    options = models.JobsListOutputFilesOptions(outputdirectoryid=directory_id)
    return {f.name: f for f in client.jobs.list_output_files(rg, WORKSPACE, EXPERIMENT, job_name, options)}


def follow(client: BatchAI, rg: str, job_name: str, http: httpx.Client) -> models.Job:
    """Print the job's stdout as it grows, until the job ends or the deadline passes."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    reader = RangeReader(http)
    state = None
    while True:
        job = client.jobs.get(rg, WORKSPACE, EXPERIMENT, job_name)
        if job.execution_state != state:
            state = job.execution_state
            say(f"[job {job_name}: {state}]")
        stdout = output_files(client, rg, job_name, "stdouterr").get("stdout.txt")
        data = reader.read_new(stdout.download_url) if stdout is not None and stdout.download_url else b""
        if data:
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()
            continue
        if state in ("succeeded", "failed"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_name} still {state} after {JOB_DEADLINE_S:.0f} s")
        time.sleep(1.0)


def check_model(client: BatchAI, rg: str, job_name: str, http: httpx.Client) -> float:
    files = output_files(client, rg, job_name, "MODEL")
    if "model.npz" not in files:
        raise RuntimeError(f"the job's MODEL output has no model.npz (found: {sorted(files)})")
    response = http.get(files["model.npz"].download_url)
    response.raise_for_status()
    say(f"downloaded model.npz ({len(response.content)} bytes) through its download URL")
    with np.load(io.BytesIO(response.content), allow_pickle=False) as data:
        params = {name: data[name] for name in data.files}
    _, _, x_test, y_test = train.load_split()
    return train.accuracy(params, x_test, y_test)


def run(state_dir: Path) -> int:
    endpoint = ensure_stack(state_dir)
    rg, sub = endpoint["resource_group"], endpoint["subscription_id"]
    client = BatchAI(StaticTokenCredential(endpoint["token"]), sub, base_url=endpoint["url"],
                     connection_verify=endpoint["ca_file"], polling_interval=1)
    storage = storage_account_from_connection_string(endpoint.get("storage_connection_string"))
    account = storage.name or "devstoreaccount1"
    share_url = f"https://{account}.file.core.windows.net/{SHARE}"

    client.workspaces.begin_create(rg, WORKSPACE, models.WorkspaceCreateParameters(location="local")).result()
    say(f"workspace {WORKSPACE}")
    script = upload_script(state_dir, account, share_url)
    say(f"uploaded the training script to {share_url}/scripts/train.py ({script})")
    cluster = ensure_cluster(client, rg, account, storage.key, share_url)
    say(f"cluster {CLUSTER}: {cluster.vm_size}, manual scale 2 nodes, {share_url} mounted at afs")
    client.experiments.begin_create(rg, WORKSPACE, EXPERIMENT).result()
    job_name = time.strftime("train-%Y%m%d-%H%M%S")
    submit(client, rg, cluster, job_name)
    say(f"experiment {EXPERIMENT}, job {job_name} submitted")

    with httpx.Client(verify=endpoint.get("ca_file") or True, timeout=30) as http:
        job = follow(client, rg, job_name, http)
        info = job.execution_info
        if job.execution_state != "succeeded":
            for error in (info.errors if info else None) or []:
                say(f"  {error.code}: {error.message}")
            stderr = output_files(client, rg, job_name, "stdouterr").get("stderr.txt")
            if stderr is not None and stderr.download_url:
                say("stderr.txt:\n" + http.get(stderr.download_url).text[-4000:])
            say(f"job {job_name} {job.execution_state} (exit code {info.exit_code if info else None})")
            return 1
        accuracy = check_model(client, rg, job_name, http)
    say(f"test accuracy of the downloaded model: {accuracy:.4f}")

    say("\ncreated:")
    say(f"  workspace   {WORKSPACE}  (resource group {rg})")
    say(f"  file share  {share_url}  ->  {script.parent.parent}")
    nodes = client.clusters.get(rg, WORKSPACE, CLUSTER).node_state_counts
    say(f"  cluster     {CLUSTER}  ({nodes.idle_node_count if nodes else '?'} idle nodes now)")
    say(f"  experiment  {EXPERIMENT}")
    say(f"  job         {job_name}  ({job.execution_state}, exit code {info.exit_code if info else None})")
    for directory in ("stdouterr", "MODEL"):
        for name, f in sorted(output_files(client, rg, job_name, directory).items()):
            say(f"    {directory}/{name}  {f.content_length} bytes")
    say("\nthe local stack is still running: `batchai stack down` (or `make down`) stops it;")
    say(f"try `batchai job show {WORKSPACE} {EXPERIMENT} {job_name}` or "
        f"`batchai cluster delete {WORKSPACE} {CLUSTER}` to release the nodes")
    return 0


def main() -> int:
    state_dir = Path(os.environ.get("BATCHAI_STATE_DIR", ".batchai")).resolve()
    try:
        return run(state_dir)
    except HttpResponseError as e:
        code = e.error.code if e.error is not None else e.status_code
        message = e.error.message if e.error is not None else e.message
        print(f"demo failed: {code}: {message}", file=sys.stderr)
    except (TimeoutError, RuntimeError, httpx.HTTPError) as e:
        print(f"demo failed: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
