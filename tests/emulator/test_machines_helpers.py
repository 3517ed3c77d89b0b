"""The image's stand-ins for mount.cifs, mount.nfs and blobfuse2, driven inside a booted machine
with the commands the service's cloud-init and the agent run, against the host's emulated shares
and a real Azurite bound to the stack's gateway."""

from __future__ import annotations

import shlex
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient, ContainerSasPermissions, generate_container_sas

from shared.adapters.local_paths import fileshare_dir
from shared.config import AZURITE_ACCOUNT, AZURITE_KEY, azurite_connection_string
from shared.localstack.azurite import AZURITE_BIN, stop_pid
from tests.emulator.conftest import Booted, Stack
from tests.polling import wait_until

pytestmark = pytest.mark.podman


def _sh(stack: Stack, machine: Booted, script: str) -> subprocess.CompletedProcess[str]:
    return stack.machines.exec(machine.spec.name, ["sh", "-c", script], timeout=120)


def _ok(stack: Stack, machine: Booted, script: str) -> str:
    result = _sh(stack, machine, script)
    assert result.returncode == 0, f"{script}\n{result.stdout}{result.stderr}"
    return result.stdout


def _is_mountpoint(stack: Stack, machine: Booted, target: str) -> bool:
    return _sh(stack, machine, f"mountpoint -q {target}").returncode == 0


def test_mount_cifs_binds_the_emulated_file_share(stack: Stack, machine: Booted) -> None:
    share = fileshare_dir(stack.state_dir, "Acct", "https://Acct.file.core.windows.net/Share")
    (share / "sub").mkdir(parents=True)
    (share / "from-host.txt").write_text("written on the host\n")
    (share / "sub" / "deep.txt").write_text("deep\n")
    _ok(stack, machine, "mkdir -p /mnt/x /mnt/xsub && (umask 077; printf 'username=acct\\npassword=k\\n' > /root/c)")
    _ok(stack, machine, "mount -t cifs //Acct.file.core.windows.net/Share /mnt/x "
                        "-o vers=3.1.1,username=acct,password=k,serverino,dir_mode=0777,file_mode=0777")
    assert _is_mountpoint(stack, machine, "/mnt/x")
    assert _ok(stack, machine, "cat /mnt/x/from-host.txt") == "written on the host\n"
    _ok(stack, machine, "echo written in the machine > /mnt/x/from-machine.txt")
    assert (share / "from-machine.txt").read_text() == "written in the machine\n"

    _ok(stack, machine, "mount -t cifs //acct.file.core.windows.net/share/sub /mnt/xsub "
                        "-o vers=3.1.1,credentials=/root/c,ro")
    assert _ok(stack, machine, "cat /mnt/xsub/deep.txt") == "deep\n"
    assert _sh(stack, machine, "touch /mnt/xsub/nope").returncode != 0  # ro is honoured

    _ok(stack, machine, "umount /mnt/x && umount /mnt/xsub")
    assert not _is_mountpoint(stack, machine, "/mnt/x") and not _is_mountpoint(stack, machine, "/mnt/xsub")
    assert (share / "from-machine.txt").exists()

    missing = _sh(stack, machine, "mount -t cifs //acct.file.core.windows.net/share/nodir /mnt/x -o vers=3.1.1")
    assert missing.returncode == 32 and "No such file or directory" in missing.stderr
    assert not _is_mountpoint(stack, machine, "/mnt/x")


def test_mount_nfs_binds_the_emulated_file_server_export(stack: Stack, machine: Booted) -> None:
    server = stack.network.gateway.rsplit(".", 1)[0] + ".9"
    export = stack.state_dir / "emulator" / "nfs" / server / "data" / "sub"
    export.mkdir(parents=True)
    (export / "from-host.txt").write_text("nfs from the host\n")
    _ok(stack, machine, "mkdir -p /mnt/y")
    _ok(stack, machine, f"mount -t nfs {server}:/data/sub /mnt/y -o rw,hard,nointr")
    assert _is_mountpoint(stack, machine, "/mnt/y")
    assert _ok(stack, machine, "cat /mnt/y/from-host.txt") == "nfs from the host\n"
    _ok(stack, machine, "echo nfs from the machine > /mnt/y/from-machine.txt")
    assert (export / "from-machine.txt").read_text() == "nfs from the machine\n"
    _ok(stack, machine, "umount /mnt/y")
    assert not _is_mountpoint(stack, machine, "/mnt/y")

    nobody = server.rsplit(".", 1)[0] + ".8"
    refused = _sh(stack, machine, f"mount -t nfs {nobody}:/data /mnt/y")
    assert refused.returncode == 32 and nobody in refused.stderr
    assert not _is_mountpoint(stack, machine, "/mnt/y")


@pytest.fixture(scope="module")
def blob_endpoint(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Azurite (blob service) listening on the stack's gateway: its account endpoint."""
    with socket.create_server((stack.network.gateway, 0)) as probe:
        port = probe.getsockname()[1]
    location = tmp_path_factory.mktemp("azurite-gateway")
    with open(location / "azurite.log", "wb") as log:
        process = subprocess.Popen(
            [str(AZURITE_BIN.with_name("azurite-blob")), "--silent", "--loose", "--skipApiVersionCheck",
             "--location", str(location), "--blobHost", stack.network.gateway, "--blobPort", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: _listening(stack.network.gateway, port) or process.poll() is not None, timeout=60,
                   what="Azurite to listen on the gateway")
        assert process.poll() is None, (location / "azurite.log").read_text()
        yield f"http://{stack.network.gateway}:{port}/{AZURITE_ACCOUNT}"
    finally:
        stop_pid(process.pid)
        process.wait(timeout=30)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _container(endpoint: str, name: str) -> ContainerClient:
    host, port = endpoint.split("//")[1].split("/")[0].split(":")
    service = BlobServiceClient.from_connection_string(azurite_connection_string(host=host, blob=int(port)))
    container = service.get_container_client(name)
    container.create_container()
    return container


def _blobfuse2_config(stack: Stack, machine: Booted, path: str, container: str, endpoint: str, auth: str) -> None:
    config = (f"components: [libfuse, file_cache, attr_cache, azstorage]\n"
              f"file_cache:\n  path: /mnt/resource/blobfuse2/{container}\n"
              f"azstorage:\n  type: block\n  account-name: {AZURITE_ACCOUNT}\n  container: {container}\n"
              f"  endpoint: {endpoint}\n{auth}")
    _ok(stack, machine, f"mkdir -p /etc/batchai/blobfuse2 && printf %s {shlex.quote(config)} > {path}")


def test_blobfuse2_mounts_the_container_and_uploads_what_is_written(stack: Stack, machine: Booted,
                                                                     blob_endpoint: str) -> None:
    container = _container(blob_endpoint, "jobdata")
    container.upload_blob("input/hello.txt", b"hello from a blob\n")
    config = "/etc/batchai/blobfuse2/abfs0.yaml"
    _blobfuse2_config(stack, machine, config, "jobdata", blob_endpoint, "  mode: key\n")
    _ok(stack, machine, "mkdir -p /mnt/b /mnt/resource/blobfuse2/jobdata")
    _ok(stack, machine, f"AZURE_STORAGE_ACCESS_KEY={shlex.quote(AZURITE_KEY)} "
                        f"blobfuse2 mount /mnt/b --config-file={config} -o allow_other")
    assert _is_mountpoint(stack, machine, "/mnt/b")
    assert _ok(stack, machine, "ls /mnt/b/input") == "hello.txt\n"
    assert _ok(stack, machine, "cat /mnt/b/input/hello.txt") == "hello from a blob\n"
    _ok(stack, machine, "mkdir -p /mnt/b/output && echo result > /mnt/b/output/result.txt "
                        "&& head -c 3000000 /dev/zero > /mnt/b/output/big.bin")
    _ok(stack, machine, "blobfuse2 unmount /mnt/b")
    assert not _is_mountpoint(stack, machine, "/mnt/b")
    wait_until(lambda: {"output/result.txt", "output/big.bin"} <= set(container.list_blob_names()), timeout=60,
               what="the files written in the mount to be blobs")
    assert container.download_blob("output/result.txt").readall() == b"result\n"
    assert container.get_blob_client("output/big.bin").get_blob_properties().size == 3_000_000



def test_blobfuse2_with_a_sas_and_read_only(stack: Stack, machine: Booted, blob_endpoint: str) -> None:
    container = _container(blob_endpoint, "readonly")
    container.upload_blob("a.txt", b"read me\n")
    sas = generate_container_sas(AZURITE_ACCOUNT, "readonly", account_key=AZURITE_KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    config = "/etc/batchai/blobfuse2/ro.yaml"
    _blobfuse2_config(stack, machine, config, "readonly", blob_endpoint, f"  mode: sas\n  sas: '?{sas}'\n")
    _ok(stack, machine, "mkdir -p /mnt/ro")
    _ok(stack, machine, f"blobfuse2 mount /mnt/ro --config-file={config} --read-only")
    try:
        assert _ok(stack, machine, "cat /mnt/ro/a.txt") == "read me\n"
        assert _sh(stack, machine, "echo x > /mnt/ro/b.txt").returncode != 0
        again = _sh(stack, machine, f"blobfuse2 mount /mnt/ro --config-file={config}")
        assert again.returncode != 0 and "already mounted" in again.stderr
    finally:
        _ok(stack, machine, "fusermount3 -u /mnt/ro")
    assert not _is_mountpoint(stack, machine, "/mnt/ro")
    assert sorted(container.list_blob_names()) == ["a.txt"]
    _ok(stack, machine, "blobfuse2 unmount all")  # forgets the mount fusermount3 ended


def test_blobfuse2_unmount_refuses_while_a_file_is_open(stack: Stack, machine: Booted, blob_endpoint: str) -> None:
    _container(blob_endpoint, "busy")
    config = "/etc/batchai/blobfuse2/busy.yaml"
    _blobfuse2_config(stack, machine, config, "busy", blob_endpoint, f"  mode: key\n  account-key: {AZURITE_KEY}\n")
    _ok(stack, machine, f"mkdir -p /mnt/busy && blobfuse2 mount /mnt/busy --config-file={config}")
    try:
        busy = _sh(stack, machine, "exec 3>/mnt/busy/open.txt; blobfuse2 unmount /mnt/busy")
        assert busy.returncode != 0 and "busy" in busy.stderr
        assert _is_mountpoint(stack, machine, "/mnt/busy")
    finally:
        _ok(stack, machine, "blobfuse2 unmount /mnt/busy")
    assert not _is_mountpoint(stack, machine, "/mnt/busy")


def test_blobfuse2_names_itself_an_emulation(stack: Stack, machine: Booted) -> None:
    assert "emulator" in _ok(stack, machine, "blobfuse2 --version")
    for helper in ("/usr/sbin/mount.cifs", "/usr/sbin/mount.nfs", "/usr/bin/blobfuse2"):
        assert "stand-in" in _ok(stack, machine, f"head -c 600 {helper}")

