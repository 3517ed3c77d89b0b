"""The cloud-init user data of Azure nodes. Pure: specs in, `#cloud-config` out.

A node boots into: the packages it needs (skipped where the image has them or IMDS says the
machine is the local emulator's), Docker (plus the NVIDIA container toolkit on NC/ND/NV sizes),
the cluster's mount volumes under the Batch AI mount root, root's ssh key of the cluster (so
mpirun reaches every node of the cluster), and the node agent installed from the service's
wheelhouse and run by systemd as `batchai-agent.service` with `--config /etc/batchai/agent.json`.

Nothing here is a storage key: the node proves who it is with its scale set's managed identity
(an IMDS token) to the service, which hands it short-lived SAS. Mount credentials given as
literal keys are written root-only (0600); Key Vault references are fetched at boot with the
node's user-assigned identity. The scripts live in `node_scripts`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from shared.adapters.compute.node_scripts import (
    AGENT_DIR,
    CONFIG_DIR,
    MOUNT_ROOT,
    bootstrap_script,
    file_entry,
    mount_script,
)
from shared.adapters.compute.port import ClusterSpec
from shared.adapters.compute.vm_sizes import is_gpu_size
from shared.config import PUBLIC_STORAGE_ENDPOINTS

AGENT_UNIT = "batchai-agent.service"
NODE_WORKDIR = "/mnt/batch/tasks/batchai"


@dataclass(frozen=True)
class AgentConfig:
    """What a node agent needs to join the service. Only the cluster's ssh key is secret (root-only)."""

    cluster_key: str
    storage_account: str  # the service's storage account
    identity_client_id: str  # the user-assigned identity nodes fetch Key Vault secrets with
    service_url: str  # the API the node asks for its credentials
    token_resource: str  # the audience of the IMDS token the node presents
    imds_url: str = "http://169.254.169.254"
    storage_endpoints: Mapping[str, str] = field(default_factory=lambda: dict(PUBLIC_STORAGE_ENDPOINTS))
    ca_pem: str = ""  # a CA the node must trust for service_url (a private CA); empty: public CAs
    ssh_private_key: str = ""  # the cluster's key pair (OpenSSH), shared by its nodes for mpirun
    ssh_public_key: str = ""
    file_server_ips: Mapping[str, str] = field(default_factory=dict)  # file server ARM id (lower) -> IP

    def endpoint(self, kind: str, account: str | None = None) -> str:
        return self.storage_endpoints[kind].replace("{account}", account or self.storage_account)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so scripts and units stay readable in the user data."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_cloud_config(doc: dict[str, Any]) -> str:
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


def render_cloud_init(cluster: ClusterSpec, agent: AgentConfig) -> str:
    """The `#cloud-config` document of one node of `cluster`."""
    gpu = is_gpu_size(cluster.vm_size)
    mounts, secret_files = mount_script(cluster.properties, agent)
    files = [
        file_entry(f"{CONFIG_DIR}/agent.json", json.dumps(_agent_json(agent, gpu), indent=2) + "\n"),
        file_entry(f"{CONFIG_DIR}/agent.env", _agent_env(agent)),
        file_entry(f"/etc/systemd/system/{AGENT_UNIT}", _agent_unit()),
        file_entry(f"{AGENT_DIR}/bootstrap.sh", bootstrap_script(agent, gpu, cluster.properties), "0755"),
        file_entry(f"{AGENT_DIR}/mount-volumes.sh", mounts, "0700"),
        *_ssh_files(agent),
        *secret_files,
    ]
    doc: dict[str, Any] = {}
    if agent.ca_pem:
        doc["ca_certs"] = {"trusted": [agent.ca_pem]}
    doc.update({
        "write_files": files,
        "runcmd": [
            [f"{AGENT_DIR}/bootstrap.sh"],
            [f"{AGENT_DIR}/mount-volumes.sh"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", AGENT_UNIT],
        ],
    })
    return dump_cloud_config(doc)


def _agent_json(agent: AgentConfig, gpu: bool) -> dict[str, Any]:
    return {
        "clusterKey": agent.cluster_key,
        "serviceUrl": agent.service_url,
        "imdsUrl": agent.imds_url,
        "tokenResource": agent.token_resource,
        "storage": {"accountName": agent.storage_account,
                    **{f"{kind}Endpoint": agent.endpoint(kind) for kind in ("blob", "queue", "table")}},
        "storageEndpoints": dict(agent.storage_endpoints),
        "identityClientId": agent.identity_client_id,
        "mountRoot": MOUNT_ROOT,
        "workdir": NODE_WORKDIR,
        "gpu": gpu,
        "fileServerIps": dict(agent.file_server_ips),  # job-level NFS mounts name file servers by id
    }


def _agent_env(agent: AgentConfig) -> str:
    lines = {
        "BATCHAI_ON_AZURE": "1",
        "BATCHAI_AGENT_CONFIG": f"{CONFIG_DIR}/agent.json",
        "BATCHAI_CLUSTER_KEY": agent.cluster_key,
        "BATCHAI_SERVICE_URL": agent.service_url,
        "BATCHAI_IMDS_URL": agent.imds_url,
        "BATCHAI_TOKEN_RESOURCE": agent.token_resource,
        "AZURE_CLIENT_ID": agent.identity_client_id,
        "AZ_BATCHAI_MOUNT_ROOT": MOUNT_ROOT,
        # Python's TLS stacks read the system store (which holds the stack's CA when one is given).
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }
    return "".join(f"{k}={json.dumps(v)}\n" for k, v in lines.items())


def _agent_unit() -> str:
    return f"""[Unit]
Description=batchai node agent
After=network-online.target docker.service
Wants=network-online.target

[Service]
Type=simple
EnvironmentFile={CONFIG_DIR}/agent.env
ExecStart={AGENT_DIR}/venv/bin/python -m shared.agent --config {CONFIG_DIR}/agent.json
Restart=always
RestartSec=5
KillMode=mixed

[Install]
WantedBy=multi-user.target
"""


def _ssh_files(agent: AgentConfig) -> list[dict[str, Any]]:
    """Root's key pair of the cluster, trusted by every node of it, for mpirun and remote shells."""
    if not agent.ssh_private_key:
        return []
    public = agent.ssh_public_key.strip() + "\n"
    authorized = file_entry("/root/.ssh/authorized_keys", public, "0600")
    authorized["append"] = True
    return [
        file_entry("/root/.ssh/id_ed25519", agent.ssh_private_key, "0600"),
        file_entry("/root/.ssh/id_ed25519.pub", public, "0644"),
        authorized,
        # Nodes come and go with new host keys on the same private addresses.
        file_entry("/etc/ssh/ssh_config.d/batchai.conf",
                   "Host *\n    StrictHostKeyChecking accept-new\n    UserKnownHostsFile /dev/null\n"
                   "    LogLevel ERROR\n"),
    ]
