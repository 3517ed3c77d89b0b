"""The machine topology of the local stack (`batchai stack up --topology machines`, `make up-cloud`).

The service runs as in the process topology, but its `vmss` provider talks to the local cloud
(`python -m shared.emulator`: the ARM emulator, IMDS, the token issuer) whose scale-set instances
are machines on a podman network the stack creates. Storage is Azurite with two accounts and
generated keys (never the well-known development key): the service's own, which only the trigger
host holds, and a data account for users' data, which the endpoint file names. Everything listens
on the network's gateway (an address of this machine on the stack's own bridge), so machines reach
storage, IMDS and the API, and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.emulator.arm.backend import user_identity
from shared.emulator.image import ensure_image
from shared.emulator.network import StackNetwork, ensure_network
from shared.localstack.azurite import ROOT, Azurite
from shared.localstack.tls import TlsFiles

SERVICE_ACCOUNT = "batchaisvc"
DATA_ACCOUNT = "batchaidata"
COMPUTE_RESOURCE_GROUP = "batchai-nodes"
COMPUTE_LOCATION = "local"
NODE_IDENTITY = "batchai-nodes"
EMULATOR_READY_S = 60.0
# Wheels the stack's nodes get besides the agent's (the distributed training tests need torch).
NODE_EXTRAS = ("torch==2.13.0+cpu",)

# App settings of the machine topology (over LOCAL_SETTINGS): machines boot in tens of seconds, so
# idle ones stay a little longer; a node that never reports ready is given up after 20 minutes (a
# machine on a busy host can take several minutes to boot and install its agent).
MACHINE_SETTINGS = {
    "BATCHAI_PROVIDER": "vmss",
    "BATCHAI_IDLE_TIMEOUT_S": "20",
    "BATCHAI_NODE_START_TIMEOUT_S": "1200",
}


@dataclass(frozen=True)
class MachinePlan:
    stack_id: str
    network: StackNetwork
    image: str
    accounts: dict[str, str]  # account name -> key
    tenant_id: str
    ssh_public_key: str


def stack_id_of(state_dir: Path) -> str:
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]


def ensure_accounts(state_dir: Path) -> dict[str, str]:
    """The two storage accounts' keys, generated once and kept root-only under the state directory."""
    path = state_dir / "local" / "accounts.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    keys = {name: base64.b64encode(secrets.token_bytes(64)).decode() for name in (SERVICE_ACCOUNT, DATA_ACCOUNT)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f)
    os.replace(tmp, path)
    return keys


def ensure_ssh_key(state_dir: Path) -> str:
    """The stack's ssh key pair (`<state>/local/ssh/id_ed25519`, 0600): nodes of clusters that name no
    credentials get its public key for their admin user, so `ssh -i` that file reaches them. The public key."""
    from shared.adapters.compute.vmss import cluster_ssh_key

    private = state_dir / "local" / "ssh" / "id_ed25519"
    public = private.with_suffix(".pub")
    if not public.exists():
        private.parent.mkdir(parents=True, exist_ok=True)
        key, pub = cluster_ssh_key()
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        public.write_text(pub + "\n")
    return public.read_text().strip()


def prepare(state_dir: Path) -> MachinePlan:
    """The image (built once), the stack's network and its storage accounts."""
    stack_id = stack_id_of(state_dir)
    return MachinePlan(stack_id=stack_id, network=ensure_network(stack_id), image=ensure_image(),
                       accounts=ensure_accounts(state_dir), tenant_id=tenant_of(state_dir),
                       ssh_public_key=ensure_ssh_key(state_dir))


def tenant_of(state_dir: Path) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, stack_id_of(state_dir)))


def start_emulator(state_dir: Path, subscription_id: str, ports: dict[str, int], plan: MachinePlan | None = None,
                   preempt_notice_s: float = 15.0) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """The local cloud's process (the token issuer; with a plan, the machines' ARM and IMDS too), and where
    it listens once ready."""
    from shared.emulator.__main__ import ready_path

    machines = ["--network", plan.network.name, "--image", plan.image, "--arm-port", str(ports["arm"]),
                "--imds-port", str(ports["imds"]), "--preempt-notice", str(preempt_notice_s)] if plan else []
    ready = ready_path(state_dir)
    ready.unlink(missing_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "emulator.log", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.emulator", "--state-dir", str(state_dir),
             "--stack-id", stack_id_of(state_dir), "--tenant-id", tenant_of(state_dir),
             "--subscription-id", subscription_id, "--issuer-port", str(ports["issuer"]),
             "--keyvault-port", str(ports.get("keyvault", 0)), *machines],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + EMULATOR_READY_S
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the local cloud exited with {process.returncode}; see {logs / 'emulator.log'}")
        if time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError(f"the local cloud did not start in {EMULATOR_READY_S:.0f} s; "
                               f"see {logs / 'emulator.log'}")
        time.sleep(0.1)
    return process, json.loads(ready.read_text())


def host_settings(plan: MachinePlan, azurite: Azurite, cloud: dict[str, Any], tls: TlsFiles, https_port: int,
                  subscription_id: str) -> dict[str, str]:
    """The trigger host's app settings in this topology (over LOCAL_SETTINGS)."""
    gateway = plan.network.gateway
    identity = (f"/subscriptions/{subscription_id}/resourceGroups/{COMPUTE_RESOURCE_GROUP}/providers/"
                f"Microsoft.ManagedIdentity/userAssignedIdentities/{NODE_IDENTITY}")
    endpoints = {"blob": f"http://{gateway}:{azurite.blob_port}/{{account}}",
                 "queue": f"http://{gateway}:{azurite.queue_port}/{{account}}",
                 "table": f"http://{gateway}:{azurite.table_port}/{{account}}"}
    return {
        **MACHINE_SETTINGS,
        "BATCHAI_DATA_CONNECTION_STRING": azurite.account_connection_string(DATA_ACCOUNT),
        "BATCHAI_STORAGE_ACCOUNT": SERVICE_ACCOUNT,
        "BATCHAI_AZURE_SUBSCRIPTION_ID": subscription_id,
        "BATCHAI_COMPUTE_RESOURCE_GROUP": COMPUTE_RESOURCE_GROUP,
        "BATCHAI_COMPUTE_LOCATION": COMPUTE_LOCATION,
        "BATCHAI_SUBNET_ID": (f"/subscriptions/{subscription_id}/resourceGroups/{COMPUTE_RESOURCE_GROUP}/providers/"
                              f"Microsoft.Network/virtualNetworks/batchai/subnets/{plan.network.name}"),
        "BATCHAI_IDENTITY_RESOURCE_ID": identity,
        "BATCHAI_IDENTITY_CLIENT_ID": user_identity(identity, plan.tenant_id).client_id,
        "BATCHAI_SSH_PUBLIC_KEY": plan.ssh_public_key,
        "BATCHAI_ARM_ENDPOINT": cloud["arm"],
        "BATCHAI_ARM_CA_FILE": cloud["arm_ca_file"],
        "BATCHAI_ARM_TOKEN": "local-cloud",
        "BATCHAI_NODE_SERVICE_URL": f"https://{gateway}:{https_port}",
        "BATCHAI_NODE_CA_FILE": str(tls.ca_file),
        "BATCHAI_IMDS_URL": cloud["imds"],
        "BATCHAI_NODE_STORAGE_ENDPOINTS": json.dumps(endpoints),
    }


def issuer_settings(cloud: dict[str, Any], tls: TlsFiles) -> dict[str, str]:
    """The trigger host's app settings naming the stack's token issuer (both topologies)."""
    return {"BATCHAI_TOKEN_ISSUER": cloud["issuer"], "BATCHAI_TOKEN_ISSUER_CA_FILE": str(tls.ca_file)}
