"""Job-level mount volumes shared by every process and task of a job: a TensorFlow job (1 parameter
server, 2 workers on 2 nodes) whose stdout/stderr and outputs live on a job-level file share, reading
data from a job-level blob container, run by two real agent processes."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable

from shared.adapters import local_paths, storage
from shared.agent.layout import segment_path
from shared.config import AZURITE_ACCOUNT, AZURITE_KEY
from shared.decisions.toolkits import gang_port
from shared.domain.messages import AssignedTask, NodeAddress
from tests.agent.conftest import EXP, RG, SUB, WS, AgentProc, Events, blob_text

# Workers end only once the parameter server has reported (the agent stops parameter servers when the
# workers of their node end), as training waits for its parameter servers.
TRAIN = '''\
import json, os, pathlib, time
task = json.loads(os.environ["TF_CONFIG"])["task"]
name = f"{task['type']}-{task['index']}"
data = pathlib.Path(os.environ["AZ_BATCHAI_JOB_MOUNT_ROOT"], "bfs", "in", "data.txt").read_text()
seen = {k: os.environ.get(k) for k in ("TF_CONFIG", "AZ_BATCHAI_PS_HOSTS", "AZ_BATCHAI_WORKER_HOSTS",
                                       "AZ_BATCHAI_TASK_INDEX")}
out = pathlib.Path(os.environ["AZ_BATCHAI_OUTPUT_MODEL"])
(out / f".{name}.tmp").write_text(json.dumps({**seen, "data": data}))
(out / f".{name}.tmp").replace(out / f"{name}.json")
print(name, "read", data, flush=True)
deadline = time.monotonic() + 600
while task["type"] == "worker" and not (out / "ps-0.json").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
'''


def test_tensorflow_job_with_a_share_and_a_blob_container_mounted_for_the_job(
        start_agent: Callable[..., AgentProc], events: Events) -> None:
    first = start_agent()
    nodes = [first, start_agent(cluster_key=first.cluster_key)]
    share_url = f"https://{AZURITE_ACCOUNT}.file.core.windows.net/tf{uuid.uuid4().hex[:8]}"
    share = local_paths.fileshare_dir(nodes[0].state_dir, AZURITE_ACCOUNT, share_url)
    share.mkdir(parents=True)
    (share / "train.py").write_text(TRAIN)
    container = storage.blob_service(nodes[0].conn).get_container_client(f"tfdata{uuid.uuid4().hex[:8]}")
    container.create_container()
    container.upload_blob("in/data.txt", b"the training data")
    credentials = {"accountKey": AZURITE_KEY}
    name, segment = f"tf{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    job = {
        "tensorFlowSettings": {"pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/afs/train.py",
                               "pythonInterpreterPath": sys.executable, "parameterServerCount": 1, "workerCount": 2},
        "nodeCount": 2, "jobOutputDirectoryPathSegment": segment,
        "stdOutErrPathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/afs",
        "outputDirectories": [{"id": "MODEL", "pathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/afs"}],
        "mountVolumes": {
            "azureFileShares": [{"accountName": AZURITE_ACCOUNT, "azureFileUrl": share_url,
                                 "credentials": credentials, "relativeMountPath": "afs"}],
            "azureBlobFileSystems": [{"accountName": AZURITE_ACCOUNT, "containerName": container.container_name,
                                      "credentials": credentials, "relativeMountPath": "bfs"}]},
    }
    assignment_id = uuid.uuid4().hex
    arm_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.BatchAI/workspaces/{WS}/experiments/{EXP}" \
             f"/jobs/{name}"
    gang = [NodeAddress(n.node_id, "127.0.0.1") for n in nodes]
    prefix = storage.output_prefix(WS, EXP, name, segment)
    for index, node in enumerate(nodes):
        node.send(AssignedTask(assignment_id=assignment_id, job_key=f"{SUB}|{RG}|{WS}|{EXP}|{name}",
                               job_arm_id=arm_id, attempt=1, task_index=index, nodes=gang, job=job, cluster={},
                               output_container=storage.C_OUTPUTS, output_prefix=prefix))
    for node in nodes:
        exited = events.wait(node.node_id, "task-exited", assignment_id, timeout=60)
        assert exited.get("exit_code") == 0 and "error" not in exited, (exited, node.log_text())

    port = gang_port(assignment_id)
    workers, ps = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"], [f"127.0.0.1:{port + 2}"]
    on_share = share / segment_path(arm_id, segment)
    for role, index in (("worker", 0), ("worker", 1), ("ps", 0)):
        seen = json.loads((on_share / "outputs" / f"{role}-{index}.json").read_text())
        assert json.loads(seen["TF_CONFIG"]) == {"cluster": {"ps": ps, "worker": workers},
                                                 "task": {"type": role, "index": index}, "environment": "cloud"}
        assert seen["AZ_BATCHAI_PS_HOSTS"] == ",".join(ps)
        assert seen["AZ_BATCHAI_WORKER_HOSTS"] == ",".join(workers)
        assert seen["AZ_BATCHAI_TASK_INDEX"] == str(index)
        assert seen["data"] == "the training data"  # the container's blob, under bfs
    # Each TensorFlow process has its own output files, as Batch AI named them.
    assert "worker-0 read the training data" in (on_share / "stdouterr" / "stdout-wk-0.txt").read_text()
    assert "worker-1 read the training data" in (on_share / "stdouterr" / "stdout-wk-1.txt").read_text()
    assert "worker-1 read the training data" in (blob_text(nodes[1].conn, f"{prefix}/stdouterr/stdout-wk-1.txt")
                                                  or "")


def test_the_output_segment_reads_the_job_id_by_position() -> None:
    """A workspace, experiment or job named like an ARM type ("jobs") is not taken for one."""
    arm_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/jobs/experiments/jobs/jobs/jobs"
    assert segment_path(arm_id, "seg") == "s/rg/workspaces/jobs/experiments/jobs/jobs/jobs/seg"
    assert segment_path(arm_id.replace("/jobs/jobs/jobs", "/e/jobs/j1"), "seg") == \
        "s/rg/workspaces/jobs/experiments/e/jobs/j1/seg"
