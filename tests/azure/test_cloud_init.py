"""The nodes' and file servers' cloud-init user data: valid for cloud-init's own schema, and right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shared.adapters.compute.cloud_init import AgentConfig, render_cloud_init
from shared.adapters.compute.fileserver_cloud_init import render_file_server_cloud_init
from shared.adapters.compute.vmss import cluster_ssh_key
from tests.azure.helpers import cluster_spec

FS_ID = "/subscriptions/s/resourceGroups/demo/providers/Microsoft.BatchAI/workspaces/ws/fileServers/nfs1"
MOUNTS = {"mountVolumes": {
    "azureFileShares": [{"accountName": "userfiles", "azureFileUrl": "https://userfiles.file.core.windows.net/data",
                         "credentials": {"accountKey": "U0VDUkVUS0VZ"}, "relativeMountPath": "afs",
                         "directoryMode": "0775", "fileMode": "0664"}],
    "azureBlobFileSystems": [{"accountName": "userblobs", "containerName": "inputs", "relativeMountPath": "bfs",
                              "credentials": {"accountKeySecretReference": {
                                  "sourceVault": {"id": "/subscriptions/s/resourceGroups/r/providers/"
                                                        "Microsoft.KeyVault/vaults/kv"},
                                  "secretUrl": "https://kv.vault.azure.net/secrets/blobkey"}}}],
    "fileServers": [{"fileServer": {"id": FS_ID}, "relativeMountPath": "nfs", "sourceDirectory": "shared"}],
    "unmanagedFileSystems": [{"mountCommand": "mount -t nfs 10.1.2.3:/exports", "relativeMountPath": "legacy"}],
}}


KEYS = cluster_ssh_key()


def agent(**kw: object) -> AgentConfig:
    private, public = KEYS
    values: dict[str, object] = {"cluster_key": "s|demo|ws|gpu", "storage_account": "batchaistate",
                                 "identity_client_id": "11111111-2222-3333-4444-555555555555",
                                 "service_url": "https://batchai.example.net", "token_resource": "api://batchai-nodes",
                                 "ssh_private_key": private, "ssh_public_key": public,
                                 "file_server_ips": {FS_ID.lower(): "10.0.0.4"}}
    values.update(kw)
    return AgentConfig(**values)  # type: ignore[arg-type]


def files_of(text: str) -> dict[str, dict[str, str]]:
    return {f["path"]: f for f in yaml.safe_load(text)["write_files"]}


def test_node_user_data_passes_cloud_init_schema(cloud_config_schema, tmp_path: Path) -> None:
    text = render_cloud_init(cluster_spec(nodeSetup=MOUNTS), agent())
    assert text.startswith("#cloud-config\n")
    result = cloud_config_schema(text, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_schema_check_rejects_a_broken_document(cloud_config_schema, tmp_path: Path) -> None:
    result = cloud_config_schema("#cloud-config\npackages: 7\nwrite_files: {path: 3}\n", tmp_path)
    assert result.returncode != 0


def test_agent_unit_config_and_no_storage_key() -> None:
    text = render_cloud_init(cluster_spec(nodeSetup=MOUNTS), agent())
    files = files_of(text)
    unit = files["/etc/systemd/system/batchai-agent.service"]["content"]
    assert "venv/bin/python -m shared.agent --config /etc/batchai/agent.json" in unit
    env = files["/etc/batchai/agent.env"]["content"].splitlines()
    assert 'BATCHAI_ON_AZURE="1"' in env and 'AZURE_CLIENT_ID="11111111-2222-3333-4444-555555555555"' in env
    assert 'BATCHAI_IMDS_URL="http://169.254.169.254"' in env
    config = json.loads(files["/etc/batchai/agent.json"]["content"])
    assert config["clusterKey"] == "s|demo|ws|gpu"
    assert config["serviceUrl"] == "https://batchai.example.net"
    assert config["tokenResource"] == "api://batchai-nodes"
    assert config["storage"]["queueEndpoint"] == "https://batchaistate.queue.core.windows.net"
    assert config["storageEndpoints"]["blob"] == "https://{account}.blob.core.windows.net"
    assert config["mountRoot"] == "/mnt/batch/tasks/shared/LS_root/mounts"
    assert "AccountKey" not in text and "SharedAccessSignature" not in text and "sig=" not in text
    doc = yaml.safe_load(text)
    assert "packages" not in doc and "package_update" not in doc  # apt runs only where it can and must
    assert doc["runcmd"][-1] == ["systemctl", "enable", "--now", "batchai-agent.service"]
    bootstrap = files["/opt/batchai/bootstrap.sh"]["content"]
    assert "/nodeagent/credentials" in bootstrap
    assert "pip install --quiet --no-index --find-links /opt/batchai/wheelhouse batchai" in bootstrap
    assert 'if [ -n "$missing" ] && [ "$EMULATOR" = 0 ]; then apt-get update' in bootstrap


def test_cluster_ssh_key_is_root_only_and_trusted_by_every_node() -> None:
    private, public = KEYS
    files = files_of(render_cloud_init(cluster_spec(), agent()))
    assert files["/root/.ssh/id_ed25519"]["permissions"] == "0600"
    assert files["/root/.ssh/id_ed25519"]["content"] == private
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert files["/root/.ssh/authorized_keys"]["content"].strip() == public
    assert public.startswith("ssh-ed25519 ")


def test_a_private_ca_is_trusted_through_cloud_init() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    doc = yaml.safe_load(render_cloud_init(cluster_spec(), agent(ca_pem=pem)))
    assert doc["ca_certs"] == {"trusted": [pem]}
    assert "ca_certs" not in yaml.safe_load(render_cloud_init(cluster_spec(), agent()))


def test_gpu_sizes_get_the_nvidia_container_toolkit_outside_the_emulator() -> None:
    gpu = files_of(render_cloud_init(cluster_spec("STANDARD_NC6"), agent()))["/opt/batchai/bootstrap.sh"]["content"]
    cpu = files_of(render_cloud_init(cluster_spec("STANDARD_D2S_V3"), agent()))["/opt/batchai/bootstrap.sh"]["content"]
    assert "apt-get install -y nvidia-container-toolkit" in gpu and "nvidia-ctk runtime configure" in gpu
    assert 'if [ "$EMULATOR" = 0 ] && ! command -v nvidia-ctk >/dev/null; then' in gpu
    assert "nvidia" not in cpu
    assert "blobfuse2" not in cpu  # no blob mounts asked for


def test_mount_volumes_become_mount_commands() -> None:
    files = files_of(render_cloud_init(cluster_spec(nodeSetup=MOUNTS), agent()))
    script = files["/opt/batchai/mount-volumes.sh"]["content"]
    root = "/mnt/batch/tasks/shared/LS_root/mounts"
    assert (f"mount -t cifs //userfiles.file.core.windows.net/data {root}/afs -o "
            "vers=3.1.1,credentials=/etc/batchai/secrets/afs0.cred") in script
    assert "dir_mode=0775,file_mode=0664" in script
    assert files["/etc/batchai/secrets/afs0.key"]["permissions"] == "0600"
    assert files["/etc/batchai/secrets/afs0.key"]["content"] == "U0VDUkVUS0VZ"
    assert "fetch_secret https://kv.vault.azure.net/secrets/blobkey /etc/batchai/secrets/abfs0.key" in script
    assert f"blobfuse2 mount {root}/bfs --config-file=/etc/batchai/blobfuse2/abfs0.yaml" in script
    assert "container: inputs" in files["/etc/batchai/blobfuse2/abfs0.yaml"]["content"]
    assert "endpoint: https://userblobs.blob.core.windows.net" in files["/etc/batchai/blobfuse2/abfs0.yaml"]["content"]
    assert f"mount -t nfs 10.0.0.4:/data/shared {root}/nfs -o rw,hard,nointr" in script
    assert f"mount -t nfs 10.1.2.3:/exports {root}/legacy" in script
    assert "apt-get install -y blobfuse2 fuse3" in files["/opt/batchai/bootstrap.sh"]["content"]
    assert "$BATCHAI_IMDS_URL/metadata/identity/oauth2/token" in script


def test_file_server_mount_needs_a_known_ip() -> None:
    with pytest.raises(ValueError, match="no known internal IP"):
        render_cloud_init(cluster_spec(nodeSetup=MOUNTS), agent(file_server_ips={}))


def test_file_server_user_data_builds_raid0_and_exports_nfs(cloud_config_schema, tmp_path: Path) -> None:
    text = render_file_server_cloud_init(3)
    result = cloud_config_schema(text, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    script = files_of(text)["/opt/batchai/file-server.sh"]["content"]
    disks = "/dev/disk/azure/scsi1/lun0 /dev/disk/azure/scsi1/lun1 /dev/disk/azure/scsi1/lun2"
    assert f"mdadm --create /dev/md0 --run --level=0 --raid-devices=3 {disks}" in script
    assert "/data 10.0.0.0/8(rw,sync,no_root_squash,no_subtree_check)" in script
    assert set(yaml.safe_load(text)["packages"]) == {"mdadm", "nfs-kernel-server"}
