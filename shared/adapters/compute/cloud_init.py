"""The cloud-init user data of Azure nodes and file server VMs. Pure: specs in, `#cloud-config` out.

A node boots into: Docker (plus the NVIDIA container toolkit on NC/ND/NV sizes), the cluster's
mount volumes under the Batch AI mount root, and the node agent installed with pip and run by
systemd as `batchai-agent.service` with `BATCHAI_ON_AZURE=1` (the agent polls Scheduled Events).
The agent reaches the service's storage with the node's user-assigned identity: its config holds
endpoints and the identity's client id, never a storage key. Mount credentials given as literal
keys are written root-only (0600); Key Vault references are fetched at boot with the identity.

A file server boots into RAID 0 over its data disks (mdadm), ext4, mounted at /data, exported
over NFS to the private network.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml

from shared.adapters.compute.port import ClusterSpec
from shared.adapters.compute.vm_sizes import is_gpu_size

MOUNT_ROOT = "/mnt/batch/tasks/shared/LS_root/mounts"
AGENT_DIR = "/opt/batchai"
CONFIG_DIR = "/etc/batchai"
SECRETS_DIR = f"{CONFIG_DIR}/secrets"
AGENT_UNIT = "batchai-agent.service"
BASE_PACKAGES = ["ca-certificates", "curl", "jq", "python3.11", "python3.11-venv", "docker.io",
                 "cifs-utils", "nfs-common"]


@dataclass(frozen=True)
class AgentConfig:
    """What a node agent needs to join the service, none of it secret."""

    cluster_key: str
    storage_account: str  # the service's storage account, reached with the identity
    identity_client_id: str
    package_source: str = "batchai"  # a pip requirement, or the URL of the project's wheel
    file_server_ips: Mapping[str, str] = field(default_factory=dict)  # file server ARM id (lower) -> IP
    endpoint_suffix: str = "core.windows.net"

    def endpoints(self) -> dict[str, str]:
        return {kind: f"https://{self.storage_account}.{kind}.{self.endpoint_suffix}"
                for kind in ("blob", "queue", "table")}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so scripts and units stay readable in the user data."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(doc: dict[str, Any]) -> str:
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


def _file(path: str, content: str, permissions: str = "0644") -> dict[str, str]:
    return {"path": path, "permissions": permissions, "owner": "root:root", "content": content}


def render_cloud_init(cluster: ClusterSpec, agent: AgentConfig) -> str:
    """The `#cloud-config` document of one node of `cluster`."""
    gpu = is_gpu_size(cluster.vm_size)
    mounts, secret_files = _mount_script(cluster.properties, agent)
    files = [
        _file(f"{CONFIG_DIR}/agent.json", json.dumps(_agent_json(agent, gpu), indent=2) + "\n"),
        _file(f"{CONFIG_DIR}/agent.env", _agent_env(agent)),
        _file(f"/etc/systemd/system/{AGENT_UNIT}", _agent_unit(agent)),
        _file(f"{AGENT_DIR}/bootstrap.sh", _bootstrap_script(agent, gpu, cluster.properties), "0755"),
        _file(f"{AGENT_DIR}/mount-volumes.sh", mounts, "0700"),
        *secret_files,
    ]
    doc: dict[str, Any] = {
        "package_update": True,
        "packages": list(BASE_PACKAGES),
        "write_files": files,
        "runcmd": [
            [f"{AGENT_DIR}/bootstrap.sh"],
            [f"{AGENT_DIR}/mount-volumes.sh"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", AGENT_UNIT],
        ],
    }
    return _dump(doc)


def _agent_json(agent: AgentConfig, gpu: bool) -> dict[str, Any]:
    return {
        "clusterKey": agent.cluster_key,
        "storage": {"accountName": agent.storage_account, **{f"{k}Endpoint": v for k, v in agent.endpoints().items()}},
        "identityClientId": agent.identity_client_id,
        "mountRoot": MOUNT_ROOT,
        "gpu": gpu,
    }


def _agent_env(agent: AgentConfig) -> str:
    endpoints = agent.endpoints()
    lines = {
        "BATCHAI_ON_AZURE": "1",
        "BATCHAI_AGENT_CONFIG": f"{CONFIG_DIR}/agent.json",
        "BATCHAI_STORAGE_ACCOUNT": agent.storage_account,
        "BATCHAI_BLOB_ENDPOINT": endpoints["blob"],
        "BATCHAI_QUEUE_ENDPOINT": endpoints["queue"],
        "BATCHAI_TABLE_ENDPOINT": endpoints["table"],
        "AZURE_CLIENT_ID": agent.identity_client_id,
        "AZ_BATCHAI_MOUNT_ROOT": MOUNT_ROOT,
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def _agent_unit(agent: AgentConfig) -> str:
    # %H is systemd's host name specifier: the node id is the VM's computer name.
    return f"""[Unit]
Description=batchai node agent
After=network-online.target docker.service
Wants=network-online.target docker.service

[Service]
Type=simple
EnvironmentFile={CONFIG_DIR}/agent.env
ExecStart={AGENT_DIR}/venv/bin/python -m shared.agent "--cluster-key={agent.cluster_key}" --node-id=%H \
"--config={CONFIG_DIR}/agent.json"
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
"""


def _bootstrap_script(agent: AgentConfig, gpu: bool, properties: Mapping[str, Any]) -> str:
    lines = ["#!/bin/bash", "set -euo pipefail", "export DEBIAN_FRONTEND=noninteractive",
             "systemctl enable --now docker"]
    if gpu:
        lines += [
            "curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey"
            " | gpg --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg",
            "curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list"
            " | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g'"
            " > /etc/apt/sources.list.d/nvidia-container-toolkit.list",
            "apt-get update",
            "apt-get install -y nvidia-container-toolkit",
            "nvidia-ctk runtime configure --runtime=docker",
            "systemctl restart docker",
        ]
    volumes = (properties.get("nodeSetup") or {}).get("mountVolumes") or {}
    if volumes.get("azureBlobFileSystems"):
        lines += [
            'curl -fsSL -o /tmp/packages-microsoft-prod.deb '
            '"https://packages.microsoft.com/config/ubuntu/$(lsb_release -rs)/packages-microsoft-prod.deb"',
            "dpkg -i /tmp/packages-microsoft-prod.deb",
            "apt-get update",
            "apt-get install -y blobfuse2 fuse3",
        ]
    lines += [
        f"python3.11 -m venv {AGENT_DIR}/venv",
        f"{AGENT_DIR}/venv/bin/pip install --upgrade pip",
        f"{AGENT_DIR}/venv/bin/pip install {shlex.quote(agent.package_source)}",
    ]
    return "\n".join(lines) + "\n"


def _secret_lines(name: str, credentials: Mapping[str, Any], files: list[dict[str, str]]) -> list[str]:
    """Shell lines that leave the credential of mount `name` in SECRETS_DIR/name.key (0600)."""
    path = f"{SECRETS_DIR}/{name}.key"
    if credentials.get("accountKey"):
        files.append(_file(path, credentials["accountKey"], "0600"))
        return []
    ref = credentials.get("accountKeySecretReference") or {}
    if not ref.get("secretUrl"):
        raise ValueError(f"mount {name}: credentials need accountKey or accountKeySecretReference")
    return [f"fetch_secret {shlex.quote(ref['secretUrl'])} {shlex.quote(path)}"]


_SCRIPT_HEAD = f"""#!/bin/bash
# Mounts the cluster's mount volumes under {MOUNT_ROOT}.
set -euo pipefail
source {CONFIG_DIR}/agent.env
mkdir -p {SECRETS_DIR} && chmod 0700 {SECRETS_DIR}
fetch_secret() {{  # Key Vault secret -> root-only file, with the node's managed identity
  local token
  token=$(curl -fsS -H Metadata:true "http://169.254.169.254/metadata/identity/oauth2/token?\
api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=$AZURE_CLIENT_ID" | jq -r .access_token)
  (umask 077; curl -fsS -H "Authorization: Bearer $token" "$1?api-version=7.4" | jq -r .value > "$2")
}}
"""


def _mount_script(properties: Mapping[str, Any], agent: AgentConfig) -> tuple[str, list[dict[str, str]]]:
    volumes = (properties.get("nodeSetup") or {}).get("mountVolumes") or {}
    lines: list[str] = []
    files: list[dict[str, str]] = []
    for i, share in enumerate(volumes.get("azureFileShares") or []):
        name, target = f"afs{i}", shlex.quote(f"{MOUNT_ROOT}/{share['relativeMountPath']}")
        url = urlparse(share["azureFileUrl"])
        unc = f"//{url.netloc}{url.path.rstrip('/')}"
        lines += _secret_lines(name, share.get("credentials") or {}, files)
        cred = f"{SECRETS_DIR}/{name}.cred"
        options = (f"vers=3.1.1,credentials={cred},serverino,nosharesock,actimeo=30,"
                   f"dir_mode={share.get('directoryMode') or '0777'},file_mode={share.get('fileMode') or '0777'}")
        lines += [
            f"(umask 077; printf 'username=%s\\npassword=%s\\n' {shlex.quote(share['accountName'])} "
            f"\"$(cat {SECRETS_DIR}/{name}.key)\" > {cred})",
            f"mkdir -p {target}",
            f"mountpoint -q {target} || mount -t cifs {shlex.quote(unc)} {target} -o {shlex.quote(options)}",
        ]
    for i, blob in enumerate(volumes.get("azureBlobFileSystems") or []):
        name, target = f"abfs{i}", shlex.quote(f"{MOUNT_ROOT}/{blob['relativeMountPath']}")
        lines += _secret_lines(name, blob.get("credentials") or {}, files)
        config = (f"components: [libfuse, file_cache, attr_cache, azstorage]\n"
                  f"file_cache:\n  path: /mnt/resource/blobfuse2/{name}\n"
                  f"azstorage:\n  type: block\n  account-name: {blob['accountName']}\n"
                  f"  container: {blob['containerName']}\n  mode: key\n")
        files.append(_file(f"{CONFIG_DIR}/blobfuse2/{name}.yaml", config, "0600"))
        extra = f" -o {shlex.quote(blob['mountOptions'])}" if blob.get("mountOptions") else ""
        lines += [
            f"mkdir -p {target} /mnt/resource/blobfuse2/{name}",
            f"mountpoint -q {target} || AZURE_STORAGE_ACCESS_KEY=\"$(cat {SECRETS_DIR}/{name}.key)\" "
            f"blobfuse2 mount {target} --config-file={CONFIG_DIR}/blobfuse2/{name}.yaml{extra}",
        ]
    for ref in volumes.get("fileServers") or []:
        server_id = (ref.get("fileServer") or {}).get("id", "")
        ip = agent.file_server_ips.get(server_id.lower())
        if not ip:
            raise ValueError(f"file server {server_id!r} has no known internal IP (is it provisioned?)")
        target = shlex.quote(f"{MOUNT_ROOT}/{ref['relativeMountPath']}")
        source = f"{ip}:/data{('/' + ref['sourceDirectory'].strip('/')) if ref.get('sourceDirectory') else ''}"
        options = ref.get("mountOptions") or "rw,hard,nointr"
        lines += [f"mkdir -p {target}",
                  f"mountpoint -q {target} || mount -t nfs {shlex.quote(source)} {target} -o {shlex.quote(options)}"]
    for fs in volumes.get("unmanagedFileSystems") or []:
        target = shlex.quote(f"{MOUNT_ROOT}/{fs['relativeMountPath']}")
        # Batch AI semantics: the mount point is appended to the user's mount command.
        lines += [f"mkdir -p {target}", f"mountpoint -q {target} || {fs['mountCommand']} {target}"]
    return _SCRIPT_HEAD + "".join(line + "\n" for line in lines), files


def render_file_server_cloud_init(disk_count: int, export_cidr: str = "10.0.0.0/8") -> str:
    """RAID 0 over the VM's `disk_count` data disks (LUN 0..n-1), ext4, /data, NFS export."""
    if disk_count < 1:
        raise ValueError("a file server needs at least one data disk")
    disks = " ".join(f"/dev/disk/azure/scsi1/lun{i}" for i in range(disk_count))
    script = f"""#!/bin/bash
# Builds /data over the data disks and exports it with NFS. Idempotent across reboots.
set -euo pipefail
for i in $(seq 1 120); do
  missing=0
  for d in {disks}; do [ -e "$d" ] || missing=1; done
  [ "$missing" = 0 ] && break
  sleep 2
done
if [ {disk_count} -gt 1 ]; then
  DEV=/dev/md0
  [ -e /dev/md0 ] || mdadm --create /dev/md0 --run --level=0 --raid-devices={disk_count} {disks}
  mdadm --detail --scan > /etc/mdadm/mdadm.conf
  update-initramfs -u
else
  DEV={disks}
fi
blkid "$DEV" >/dev/null 2>&1 || mkfs.ext4 -F "$DEV"
mkdir -p /data
grep -q ' /data ' /etc/fstab || echo "$DEV /data ext4 defaults,nofail,discard 0 2" >> /etc/fstab
mountpoint -q /data || mount /data
chmod 0777 /data
grep -q '^/data ' /etc/exports || echo "/data {export_cidr}(rw,sync,no_root_squash,no_subtree_check)" >> /etc/exports
systemctl enable --now nfs-kernel-server
exportfs -ra
"""
    doc: dict[str, Any] = {
        "package_update": True,
        "packages": ["mdadm", "nfs-kernel-server"],
        "write_files": [_file(f"{AGENT_DIR}/file-server.sh", script, "0755")],
        "runcmd": [[f"{AGENT_DIR}/file-server.sh"]],
    }
    return _dump(doc)
