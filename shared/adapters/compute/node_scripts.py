"""The shell scripts a node's cloud-init runs: `bootstrap.sh` (packages, Docker, the NVIDIA toolkit,
the node agent from the service's wheelhouse) and `mount-volumes.sh` (the cluster's mount volumes).
Pure text builders.

Steps that need the internet (apt repositories, Docker's and NVIDIA's, packages.microsoft.com)
run only where the image lacks what they install and IMDS does not say the machine is the local
emulator's (`compute.azEnvironment` "BatchAIEmulator", whose image carries everything and whose
network reaches nothing outside the stack). The agent itself never comes from a public index: the
node asks the service for its credentials with its IMDS token, and the answer lists the
wheelhouse's files with read-only SAS URLs.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from shared.adapters.compute.cloud_init import AgentConfig

MOUNT_ROOT = "/mnt/batch/tasks/shared/LS_root/mounts"
AGENT_DIR = "/opt/batchai"
CONFIG_DIR = "/etc/batchai"
SECRETS_DIR = f"{CONFIG_DIR}/secrets"
EMULATOR_ENVIRONMENT = "BatchAIEmulator"
# Ubuntu 24.04 packages a node needs (the emulator's image has their stand-ins).
BASE_PACKAGES = ("ca-certificates", "curl", "jq", "python3-venv", "docker.io", "cifs-utils", "nfs-common",
                 "openmpi-bin", "fuse3")

_HEAD = f"""#!/bin/bash
set -euo pipefail
source {CONFIG_DIR}/agent.env
export DEBIAN_FRONTEND=noninteractive
imds() {{  # GET an IMDS path (the metadata service may answer only once the network is up)
  curl -fsS -H Metadata:true --retry 30 --retry-delay 2 --retry-connrefused "$BATCHAI_IMDS_URL/metadata/$1"
}}
EMULATOR=0
if [ "$(imds 'instance/compute/azEnvironment?api-version=2021-02-01&format=text')" = {EMULATOR_ENVIRONMENT} ]; then
  EMULATOR=1
fi
"""


def bootstrap_script(agent: AgentConfig, gpu: bool, properties: Mapping[str, Any]) -> str:
    packages = " ".join(BASE_PACKAGES)
    lines = [
        "missing=''",
        f"for p in {packages}; do dpkg -s \"$p\" >/dev/null 2>&1 || missing=\"$missing $p\"; done",
        'if [ -n "$missing" ] && [ "$EMULATOR" = 0 ]; then apt-get update && apt-get install -y $missing; fi',
        "if command -v dockerd >/dev/null; then systemctl enable --now docker; fi",
    ]
    if gpu:
        lines += [
            'if [ "$EMULATOR" = 0 ] && ! command -v nvidia-ctk >/dev/null; then',
            "  curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey"
            " | gpg --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg",
            "  curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list"
            " | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g'"
            " > /etc/apt/sources.list.d/nvidia-container-toolkit.list",
            "  apt-get update",
            "  apt-get install -y nvidia-container-toolkit",
            "  nvidia-ctk runtime configure --runtime=docker",
            "  systemctl restart docker",
            "fi",
        ]
    volumes = (properties.get("nodeSetup") or {}).get("mountVolumes") or {}
    if volumes.get("azureBlobFileSystems"):
        lines += [
            'if [ "$EMULATOR" = 0 ] && ! command -v blobfuse2 >/dev/null; then',
            '  curl -fsSL -o /tmp/packages-microsoft-prod.deb '
            '"https://packages.microsoft.com/config/ubuntu/$(lsb_release -rs)/packages-microsoft-prod.deb"',
            "  dpkg -i /tmp/packages-microsoft-prod.deb",
            "  apt-get update",
            "  apt-get install -y blobfuse2 fuse3",
            "fi",
        ]
    lines += [
        "# The node agent, from the service's wheelhouse (asked for with the node's identity).",
        "resource=$(jq -rn --arg r \"$BATCHAI_TOKEN_RESOURCE\" '$r|@uri')",
        "token=$(imds \"identity/oauth2/token?api-version=2018-02-01&resource=$resource\" | jq -r .access_token)",
        "body=$(jq -cn --arg c \"$BATCHAI_CLUSTER_KEY\" --arg n \"$(hostname)\" '{clusterKey: $c, nodeId: $n}')",
        'credentials=$(curl -fsS --retry 30 --retry-delay 2 --retry-all-errors -X POST '
        '-H "Authorization: Bearer $token" -H "Content-Type: application/json" -d "$body" '
        '"$BATCHAI_SERVICE_URL/nodeagent/credentials")',
        f"mkdir -p {AGENT_DIR}/wheelhouse && cd {AGENT_DIR}/wheelhouse",
        "echo \"$credentials\" | jq -r '.wheelhouse[] | \"\\(.name)\\t\\(.url)\"' |",
        "  while IFS=$'\\t' read -r name url; do curl -fsS --retry 5 -o \"$name\" \"$url\"; done",
        f"[ -x {AGENT_DIR}/venv/bin/python ] || python3 -m venv {AGENT_DIR}/venv",
        f"{AGENT_DIR}/venv/bin/pip install --quiet --no-index --find-links {AGENT_DIR}/wheelhouse batchai",
    ]
    return _HEAD + "\n".join(lines) + "\n"


def file_entry(path: str, content: str, permissions: str = "0644") -> dict[str, str]:
    """A cloud-init `write_files` entry owned by root."""
    return {"path": path, "permissions": permissions, "owner": "root:root", "content": content}


def _secret_lines(name: str, credentials: Mapping[str, Any], files: list[dict[str, str]]) -> list[str]:
    """Shell lines that leave the credential of mount `name` in SECRETS_DIR/name.key (0600)."""
    path = f"{SECRETS_DIR}/{name}.key"
    if credentials.get("accountKey"):
        files.append(file_entry(path, credentials["accountKey"], "0600"))
        return []
    ref = credentials.get("accountKeySecretReference") or {}
    if not ref.get("secretUrl"):
        raise ValueError(f"mount {name}: credentials need accountKey or accountKeySecretReference")
    return [f"fetch_secret {shlex.quote(ref['secretUrl'])} {shlex.quote(path)}"]


_MOUNT_HEAD = f"""#!/bin/bash
# Mounts the cluster's mount volumes under {MOUNT_ROOT}.
set -euo pipefail
source {CONFIG_DIR}/agent.env
mkdir -p {SECRETS_DIR} && chmod 0700 {SECRETS_DIR}
fetch_secret() {{  # Key Vault secret -> root-only file, with the node's user-assigned identity
  local token
  token=$(curl -fsS -H Metadata:true "$BATCHAI_IMDS_URL/metadata/identity/oauth2/token?\\
api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=$AZURE_CLIENT_ID" | jq -r .access_token)
  (umask 077; curl -fsS -H "Authorization: Bearer $token" "$1?api-version=7.4" | jq -r .value > "$2")
}}
"""


def mount_script(properties: Mapping[str, Any], agent: AgentConfig) -> tuple[str, list[dict[str, str]]]:
    """The script, and the root-only files (literal keys, blobfuse2 configs) it reads."""
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
                  f"  container: {blob['containerName']}\n  mode: key\n"
                  f"  endpoint: {agent.endpoint('blob', blob['accountName'])}\n")
        files.append(file_entry(f"{CONFIG_DIR}/blobfuse2/{name}.yaml", config, "0600"))
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
    return _MOUNT_HEAD + "".join(line + "\n" for line in lines), files
