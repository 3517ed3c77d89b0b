"""The node agent as it runs on a machine (``--config``): its host name is its node id, IMDS (the
emulator's, signing with the stack's issuer) gives its IP, VM name and identity token, and storage
is reached only with the SAS the node credentials API grants (no account key in its environment)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from shared.adapters import storage
from shared.adapters.compute import vmss
from shared.domain.messages import AssignedTask, NodeAddress
from shared.emulator.imds import Imds
from tests.agent.conftest import Events, blob_text, stop_process
from tests.identity.helpers import Identity, Vm
from tests.nodeagent.conftest import (
    AUDIENCE,
    COMPUTE_RG,
    COMPUTE_SUB,
    EXP,
    RG,
    SUB,
    WS,
    CredentialsService,
    new_cluster,
    node_of,
    outputs_prefix,
    scale_set_identity,
)
from tests.nodeagent.service import secret_name
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
PRIVATE_IP = "127.0.0.42"  # what IMDS reports; the agent registers it (nothing is sent to it)


@dataclass
class Machine:
    cluster_key: str
    node_id: str
    vm: Vm
    imds: Imds
    process: subprocess.Popen[bytes]
    log: Path
    mount_root: Path
    nft_script: Path

    def nft_rules(self) -> str:
        return self.nft_script.read_text() if self.nft_script.exists() else ""

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _blob_endpoint_template(conn: str) -> str:
    endpoint = storage.blob_service(conn).url.rstrip("/")
    return endpoint.rsplit("/", 1)[0] + "/{account}"


@pytest.fixture
def machine(node_api: CredentialsService, tmp_path: Path) -> Iterator[Machine]:
    key = new_cluster()
    node_id = node_of(key, 7)
    scale_set = vmss.scale_set_name(key)
    principal = str(uuid.uuid4())
    vm = Vm(resource_id=f"/subscriptions/{COMPUTE_SUB}/resourceGroups/{COMPUTE_RG}/providers/Microsoft.Compute/"
                        f"virtualMachineScaleSets/{scale_set}/virtualMachines/7",
            name=f"{scale_set}_7", computer_name=node_id, vm_id=str(uuid.uuid4()), private_ip=PRIVATE_IP,
            subscription_id=COMPUTE_SUB, resource_group=COMPUTE_RG, scale_set=scale_set,
            identities=(Identity("system", scale_set_identity(key), principal, str(uuid.uuid4())),))
    imds = Imds(node_api.issuer, {"127.0.0.1": vm}.get, "127.0.0.1").start()  # the agent calls from 127.0.0.1
    blob_template = _blob_endpoint_template(node_api.conn)
    config = {
        "clusterKey": key, "serviceUrl": node_api.url, "imdsUrl": imds.url, "tokenResource": AUDIENCE,
        "storage": {"accountName": storage.blob_service(node_api.conn).account_name},
        "storageEndpoints": {"blob": blob_template, "queue": blob_template, "table": blob_template},
        "mountRoot": str(tmp_path / "mnt" / "mounts"), "workdir": str(tmp_path / "work"), "gpu": False,
    }
    config_file = tmp_path / "agent.json"
    config_file.write_text(json.dumps(config))
    # What cloud-init's environment file gives the agent: no storage key, the CA store that trusts the service.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHAI_") and k != "AzureWebJobsStorage"}
    # The agent runs on this host, whose firewall a test must not change: its `nft` records the script it is
    # given (the rules are enforced in tests/agent/test_isolation_network.py and on machines in tests/e2e).
    nft_script, bin_dir = tmp_path / "nft-script", tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nft").write_text(f'#!/bin/sh\n[ "$1 $2" = "-f -" ] || exit 64\ncat > "{nft_script}"\n')
    (bin_dir / "nft").chmod(0o755)
    env.update(PYTHONPATH=str(REPO), SSL_CERT_FILE=node_api.ca_file, PATH=f"{bin_dir}:{env['PATH']}")
    log = tmp_path / "agent.log"
    with open(log, "ab") as out:
        # The machine's host name is its computer name: a UTS namespace of its own gives the agent one.
        process = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', node_id,
             sys.executable, "-m", "shared.agent", "--config", str(config_file), "--heartbeat-s", "0.5"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield Machine(key, node_id, vm, imds, process, log, Path(config["mountRoot"]), nft_script)
    finally:
        stop_process(process)
        imds.stop()


def machine_task(machine: Machine, job: str, props: dict[str, Any]) -> AssignedTask:
    """Task 0 of a one-node job on the machine."""
    return AssignedTask(
        assignment_id=uuid.uuid4().hex, job_key=f"{SUB}|{RG}|{WS}|{EXP}|{job}".lower(),
        job_arm_id=f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.BatchAI/workspaces/{WS}"
                   f"/experiments/{EXP}/jobs/{job}",
        attempt=1, task_index=0, nodes=[NodeAddress(machine.node_id, PRIVATE_IP)], job=props, cluster={},
        output_container=storage.C_OUTPUTS,
        output_prefix=outputs_prefix(job, props["jobOutputDirectoryPathSegment"]))


def test_machine_agent_registers_heartbeats_and_runs_a_task_with_scoped_storage(
        machine: Machine, node_api: CredentialsService, events: Events) -> None:
    registered = events.wait(machine.node_id, "node-registered", timeout=60)
    assert registered["cluster_key"] == machine.cluster_key
    assert registered["inventory"]["address"] == PRIVATE_IP, machine.log_text()

    beat = storage.container(node_api.conn, storage.C_HEARTBEATS).get_blob_client(
        storage.heartbeat_blob(machine.cluster_key, machine.node_id))

    def beat_etag() -> str | None:
        if not beat.exists():
            return None
        props = beat.get_blob_properties()
        return props.etag if props.metadata.get("pid") == str(machine.process.pid) else None
    first = wait_until(beat_etag, 20, what="a heartbeat blob")
    wait_until(lambda: beat_etag() not in (None, first), 20, what="the next heartbeat")

    job, segment = f"j{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    props = {"customToolkitSettings": {"commandLine": 'env | sort; echo trained > "$AZ_BATCHAI_OUTPUT_MODEL/m.txt"'},
             "nodeCount": 1, "jobOutputDirectoryPathSegment": segment,
             "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
             "outputDirectories": [{"id": "MODEL", "pathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/out"}]}
    prefix = outputs_prefix(job, segment)
    task = machine_task(machine, job, props)
    assignment_id = task.assignment_id
    node_api.send(machine.node_id, node_api.hold(machine.cluster_key, machine.node_id, task))
    exited = events.wait(machine.node_id, "task-exited", assignment_id, timeout=60)
    assert exited.get("exit_code") == 0 and "error" not in exited, (exited, machine.log_text())
    rules = machine.nft_rules()  # the job's users are refused the machine's identity endpoint and the service
    assert f"{urlsplit(machine.imds.url).port}" in rules and f"{urlsplit(node_api.url).port}" in rules, rules
    assert "skuid" in rules and "reject" in rules, rules
    stdout = blob_text(node_api.conn, f"{prefix}/stdouterr/stdout.txt") or ""
    assert f"AZ_BATCHAI_MOUNT_ROOT={machine.mount_root}\n" in stdout
    assert "sig=" not in stdout and "AccountKey" not in stdout  # no credential of the node reaches a task
    assert (blob_text(node_api.conn, f"{prefix}/outputs/MODEL/m.txt") or "").strip() == "trained"
    assert (machine.mount_root / "logs").is_dir()  # stdouterr under the config's mount root

    # The cluster's volumes are cloud-init's: the agent checks them and says when one is missing.
    share = {"accountName": "acct", "azureFileUrl": "https://acct.file.core.windows.net/data",
             "relativeMountPath": "afs", "credentials": {"accountKey": "k"}}
    node_api.send(machine.node_id, node_api.setup(machine.cluster_key, machine.node_id,
                                                  {"nodeSetup": {"mountVolumes": {"azureFileShares": [share]}}}))
    unusable = events.wait(machine.node_id, "node-unusable", timeout=30)
    assert unusable["error"]["code"] == "MountFailed"
    assert f"not mounted at {machine.mount_root / 'afs'}" in unusable["error"]["message"]


def test_what_a_machine_holds_reads_no_table_and_writes_no_other_queue(machine: Machine, node_api: CredentialsService,
                                                                 events: Events) -> None:
    events.wait(machine.node_id, "node-registered", timeout=60)
    # The same grant the agent holds: its IMDS token for the node audience, then its credentials.
    with httpx.Client(base_url=machine.imds.url, headers={"Metadata": "true"}, trust_env=False) as imds:
        token = imds.get("/metadata/identity/oauth2/token",
                         params={"api-version": "2018-02-01", "resource": AUDIENCE}).json()["access_token"]
    grant = node_api.post("/nodeagent/credentials", {"clusterKey": machine.cluster_key, "nodeId": machine.node_id},
                          token).json()
    other = storage.node_queue_name(node_of(machine.cluster_key, 8))
    storage.ensure_queue(node_api.conn, other)
    assert "events" not in grant  # a machine's events go through the service, which takes its own only
    for key in ("nodeQueue", "poisonQueue", "heartbeat"):
        sas = grant[key].partition("?")[2]
        queue_base = storage.queue_service(node_api.conn).url
        other_queue = QueueClient(queue_base, other, credential=AzureSasCredential(sas))
        with pytest.raises(HttpResponseError) as caught:
            list(other_queue.receive_messages())
        assert caught.value.status_code == 403, key
        with pytest.raises(HttpResponseError) as caught:
            other_queue.send_message("an assign of my making")
        assert caught.value.status_code == 403, key
        tables = TableClient(storage.table_service(node_api.conn).url, storage.T_SCHED,
                             credential=AzureSasCredential(sas))
        with pytest.raises(HttpResponseError) as caught:
            list(tables.list_entities())
        assert caught.value.status_code == 403, key


def test_a_preempt_scheduled_event_stops_the_node_and_is_approved(machine: Machine, events: Events) -> None:
    events.wait(machine.node_id, "node-registered", timeout=60)
    event_id = machine.imds.post_event(machine.vm, "Preempt", datetime.now(UTC) + timedelta(seconds=30))
    events.wait(machine.node_id, "node-preempted", timeout=30)
    wait_until(lambda: machine.imds.acknowledged(event_id), 20, what="the event's approval")
    machine.process.send_signal(signal.SIGTERM)
    assert machine.process.wait(30) == 0


def test_a_machine_reads_key_vault_references_with_its_identity_and_refuses_unsigned_messages(
        machine: Machine, node_api: CredentialsService, events: Events) -> None:
    events.wait(machine.node_id, "node-registered", timeout=60)
    present, registry = secret_name(), secret_name()
    value = f"vault-{uuid.uuid4().hex}"
    node_api.vault.set_secret(present, value)
    node_api.vault.set_secret(registry, "registry-password")

    def ref(name: str) -> dict[str, Any]:
        return {"sourceVault": {"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/v"},
                "secretUrl": node_api.vault.secret_url(name)}
    job = f"j{uuid.uuid4().hex[:8]}"
    props = {"customToolkitSettings": {"commandLine": 'echo "kv=$FROM_KV"'}, "nodeCount": 1,
             "jobOutputDirectoryPathSegment": uuid.uuid4().hex, "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
             "secrets": [{"name": "FROM_KV", "valueSecretReference": ref(present)}]}
    in_container = {**props, "containerSettings": {"imageSourceRegistry": {
        "image": "batchai-test/private:1", "serverUrl": "127.0.0.1:9",
        "credentials": {"username": "u", "passwordSecretReference": ref(registry)}}}}
    task = machine_task(machine, job, props)
    node_api.send(machine.node_id, node_api.hold(machine.cluster_key, machine.node_id, task))
    exited = events.wait(machine.node_id, "task-exited", task.assignment_id, timeout=60)
    assert exited.get("exit_code") == 0, (exited, machine.log_text()[-2000:])
    assert f"kv={value}" in (blob_text(node_api.conn, f"{task.output_prefix}/stdouterr/stdout.txt") or "")
    pulled = machine_task(machine, f"j{uuid.uuid4().hex[:8]}", in_container)
    node_api.send(machine.node_id, node_api.hold(machine.cluster_key, machine.node_id, pulled))
    error = events.wait(machine.node_id, "task-exited", pulled.assignment_id, timeout=60)["error"]
    assert error["code"] in ("ImagePullFailed", "ContainerEngineUnavailable"), error  # not the credentials
    principal = machine.vm.identities[0].principal_id  # the machine's own identity read them, not the service's
    assert {(present, principal), (registry, principal)} <= {(r.name, r.principal) for r in node_api.vault.reads}

    forged = machine_task(machine, f"j{uuid.uuid4().hex[:8]}", props)
    storage.queue(node_api.conn, storage.node_queue_name(machine.node_id)).send_message(
        node_api.hold(machine.cluster_key, machine.node_id, forged).to_json())  # held, but unsigned
    poison = storage.queue(node_api.conn, f"{storage.node_queue_name(machine.node_id)}-poison")
    refused = wait_until(lambda: [json.loads(m.content) for m in poison.peek_messages(max_messages=8)], 30,
                         what="the unsigned message in the poison queue")
    assert "unsigned" in refused[0]["reason"]
    assert events.of(machine.node_id, assignment_id=forged.assignment_id) == []
