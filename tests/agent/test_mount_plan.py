"""Mounts on machines: the mount plan of job volumes (table-driven), and its execution through a
recording runner (the commands are the OS tools; this host cannot run cifs or blobfuse2 mounts)."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.agent.machine_mounts import MachineMounter
from shared.agent.mount_plan import MountStep, plan_mounts
from shared.agent.runtime import TaskStartError

ROOT = Path("/mnt/batch/tasks/batchai/jobs/a1/mounts")
CONFIG = Path("/mnt/batch/tasks/batchai/jobs/a1/mount-config")
ENDPOINTS = {"blob": "http://10.213.5.1:10000/{account}", "queue": "http://10.213.5.1:10001/{account}",
             "table": "http://10.213.5.1:10002/{account}"}
SERVER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/ws/fileServers/nfs1"
KEY = "c2VjcmV0LWtleQ=="
SHARE = {"accountName": "acct", "azureFileUrl": "https://acct.file.core.windows.net/data", "relativeMountPath": "afs",
         "credentials": {"accountKey": KEY}}
BLOB = {"accountName": "acct", "containerName": "inputs", "relativeMountPath": "bfs",
        "credentials": {"accountKey": KEY}}


def plan(volumes: dict[str, Any]) -> list[MountStep]:
    return plan_mounts(volumes, ROOT, CONFIG, ENDPOINTS, {SERVER.lower(): "10.213.5.20"})


@pytest.mark.parametrize(("volumes", "argv", "unmount"), [
    ({"azureFileShares": [SHARE]},
     ("mount", "-t", "cifs", "//acct.file.core.windows.net/data", f"{ROOT}/afs", "-o",
      f"vers=3.1.1,credentials={CONFIG}/afs0.cred,serverino,nosharesock,actimeo=30,dir_mode=0777,file_mode=0777"),
     ("umount", f"{ROOT}/afs")),
    ({"azureFileShares": [{**SHARE, "azureFileUrl": "https://acct.file.core.windows.net/data/", "directoryMode": "0755",
                           "fileMode": "0644"}]},
     ("mount", "-t", "cifs", "//acct.file.core.windows.net/data", f"{ROOT}/afs", "-o",
      f"vers=3.1.1,credentials={CONFIG}/afs0.cred,serverino,nosharesock,actimeo=30,dir_mode=0755,file_mode=0644"),
     ("umount", f"{ROOT}/afs")),
    ({"azureBlobFileSystems": [BLOB]},
     ("blobfuse2", "mount", f"{ROOT}/bfs", f"--config-file={CONFIG}/abfs0.yaml"),
     ("blobfuse2", "unmount", f"{ROOT}/bfs")),
    ({"azureBlobFileSystems": [{**BLOB, "mountOptions": "-o attr_timeout=240 -o ro"}]},
     ("blobfuse2", "mount", f"{ROOT}/bfs", f"--config-file={CONFIG}/abfs0.yaml", "-o", "attr_timeout=240", "-o", "ro"),
     ("blobfuse2", "unmount", f"{ROOT}/bfs")),
    ({"azureBlobFileSystems": [{**BLOB, "mountOptions": "allow_other,ro"}]},
     ("blobfuse2", "mount", f"{ROOT}/bfs", f"--config-file={CONFIG}/abfs0.yaml", "-o", "allow_other,ro"),
     ("blobfuse2", "unmount", f"{ROOT}/bfs")),
    ({"fileServers": [{"fileServer": {"id": SERVER}, "relativeMountPath": "nfs"}]},
     ("mount", "-t", "nfs", "10.213.5.20:/data", f"{ROOT}/nfs", "-o", "rw,hard,nointr"),
     ("umount", f"{ROOT}/nfs")),
    ({"fileServers": [{"fileServer": {"id": SERVER.upper()}, "sourceDirectory": "/team/a/", "mountOptions": "ro",
                       "relativeMountPath": "nfs"}]},
     ("mount", "-t", "nfs", "10.213.5.20:/data/team/a", f"{ROOT}/nfs", "-o", "ro"),
     ("umount", f"{ROOT}/nfs")),
    ({"unmanagedFileSystems": [{"mountCommand": "mount -t tmpfs -o size=1g tmpfs", "relativeMountPath": "scratch"}]},
     ("bash", "-c", f"mount -t tmpfs -o size=1g tmpfs {ROOT}/scratch"),
     ("umount", f"{ROOT}/scratch")),
])
def test_each_volume_kind_is_one_mount_command(volumes: dict[str, Any], argv: tuple[str, ...],
                                               unmount: tuple[str, ...]) -> None:
    (step,) = plan(volumes)
    assert step.argv == argv
    assert step.unmount == unmount
    assert step.target in step.dirs
    assert all(KEY not in part for part in step.argv)  # the key is never on a command line


def test_file_share_key_goes_to_a_credentials_file() -> None:
    (step,) = plan({"azureFileShares": [SHARE]})
    assert step.env == {}
    (secret,) = step.files
    assert secret.path == CONFIG / "afs0.cred"
    assert secret.content == f"username=acct\npassword={KEY}\n"


def test_blob_container_config_names_the_endpoint_and_the_key_is_in_the_environment() -> None:
    (step,) = plan({"azureBlobFileSystems": [BLOB]})
    assert step.env == {"AZURE_STORAGE_ACCESS_KEY": KEY}
    (config,) = step.files
    assert KEY not in config.content
    doc = yaml.safe_load(config.content)
    assert doc["azstorage"] == {"type": "block", "account-name": "acct", "container": "inputs", "mode": "key",
                                "endpoint": "http://10.213.5.1:10000/acct"}
    assert doc["file_cache"]["path"] == str(CONFIG / "abfs0-cache")
    assert CONFIG / "abfs0-cache" in step.dirs


def test_every_volume_of_a_job_in_one_plan_with_distinct_files() -> None:
    steps = plan({"azureFileShares": [SHARE, {**SHARE, "relativeMountPath": "afs2"}],
                  "azureBlobFileSystems": [BLOB, {**BLOB, "relativeMountPath": "bfs2"}]})
    assert [s.target.name for s in steps] == ["afs", "afs2", "bfs", "bfs2"]
    files = [f.path for s in steps for f in s.files]
    assert len(set(files)) == 4


@pytest.mark.parametrize(("volumes", "message"), [
    ({"azureFileShares": [{**SHARE, "credentials": {}}]}, "no account key for storage account acct"),
    ({"azureBlobFileSystems": [{**BLOB, "credentials": {"accountKeySecretReference": {"secretUrl": "https://v"}}}]},
     "Key Vault secret references are not supported"),
    ({"fileServers": [{"fileServer": {"id": SERVER + "-other"}, "relativeMountPath": "nfs"}]},
     "has no known internal IP"),
    ({"azureFileShares": [{**SHARE, "relativeMountPath": "../escape"}]}, "invalid relativeMountPath"),
    ({"azureFileShares": [{**SHARE, "relativeMountPath": ""}]}, "invalid relativeMountPath"),
    ({"azureFileShares": [{k: v for k, v in SHARE.items() if k != "azureFileUrl"}]}, "lacks a field"),
])
def test_volumes_that_cannot_be_mounted_are_mount_failures(volumes: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskStartError) as caught:
        plan(volumes)
    assert caught.value.code == "MountFailed" and message in caught.value.message


class RecordingRunner:
    """Stands in for the OS tools at the plan boundary: records each command with its environment and
    the secret files as they were when it ran; `mountpoint -q` answers from what it mounted."""

    def __init__(self, failing: str | None = None, mounted: set[str] | None = None) -> None:
        self.calls: list[tuple[tuple[str, ...], dict[str, str]]] = []
        self.mounted = set(mounted or ())
        self.failing = failing
        self.seen_files: dict[str, tuple[str, int]] = {}

    def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        argv = tuple(argv)
        if argv[0] == "mountpoint":
            return subprocess.CompletedProcess(argv, 0 if argv[-1] in self.mounted else 32, "", "")
        self.calls.append((argv, dict(env)))
        for part in argv:
            for path in (Path(p.split("=", 1)[-1]) for p in part.split(",")):
                if path.is_file():
                    self.seen_files[str(path)] = (path.read_text(), stat.S_IMODE(path.stat().st_mode))
        if self.failing and self.failing in argv:
            return subprocess.CompletedProcess(argv, 32, "", "mount error(13): Permission denied")
        target = argv[4] if argv[:2] == ("mount", "-t") else argv[2] if argv[0] == "blobfuse2" else argv[-1]
        if argv[0] in ("umount",) or argv[1:2] == ("unmount",):
            self.mounted.discard(target)
        else:
            self.mounted.add(target)
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_job_volumes_are_mounted_with_secret_files_0600_and_unmounted_at_release(tmp_path: Path) -> None:
    runner = RecordingRunner()
    mounter = MachineMounter(runner, ENDPOINTS, {})
    root, job_dir = tmp_path / "jobs" / "a1" / "mounts", tmp_path / "jobs" / "a1"
    mounted = mounter.mount_job({"azureFileShares": [SHARE], "azureBlobFileSystems": [BLOB]}, root, job_dir)
    assert [argv[0] for argv, _ in runner.calls] == ["mount", "blobfuse2"]
    assert runner.mounted == {str(root / "afs"), str(root / "bfs")}
    cred = job_dir / "mount-config" / "afs0.cred"
    assert runner.seen_files[str(cred)] == (f"username=acct\npassword={KEY}\n", 0o600)
    assert not cred.exists()  # read once by mount.cifs, then gone
    config = job_dir / "mount-config" / "abfs0.yaml"
    assert runner.seen_files[str(config)][1] == 0o600
    assert stat.S_IMODE((job_dir / "mount-config").stat().st_mode) == 0o700
    assert runner.calls[1][1] == {"AZURE_STORAGE_ACCESS_KEY": KEY}
    assert all(KEY not in " ".join(argv) for argv, _ in runner.calls)

    mounted.release()
    assert runner.mounted == set()
    assert [argv for argv, _ in runner.calls[2:]] == [("blobfuse2", "unmount", str(root / "bfs")),
                                                      ("umount", str(root / "afs"))]
    assert not config.exists()


def test_a_failing_mount_is_a_mount_failure_and_undoes_the_mounts_before_it(tmp_path: Path) -> None:
    runner = RecordingRunner(failing="blobfuse2")
    mounter = MachineMounter(runner, ENDPOINTS, {})
    with pytest.raises(TaskStartError) as caught:
        mounter.mount_job({"azureFileShares": [SHARE], "azureBlobFileSystems": [BLOB]}, tmp_path / "m", tmp_path)
    assert caught.value.code == "MountFailed"
    assert "bfs" in caught.value.message and "Permission denied" in caught.value.message
    assert runner.mounted == set()
    assert runner.calls[-1][0] == ("umount", str(tmp_path / "m" / "afs"))


def test_a_volume_already_mounted_is_not_mounted_again(tmp_path: Path) -> None:
    runner = RecordingRunner(mounted={str(tmp_path / "m" / "afs")})
    MachineMounter(runner, ENDPOINTS, {}).mount_job({"azureFileShares": [SHARE]}, tmp_path / "m", tmp_path)
    assert runner.calls == []


def test_cluster_volumes_are_only_checked(tmp_path: Path) -> None:
    volumes = {"azureFileShares": [SHARE], "azureBlobFileSystems": [BLOB]}
    runner = RecordingRunner(mounted={str(tmp_path / "afs"), str(tmp_path / "bfs")})
    assert MachineMounter(runner, ENDPOINTS, {}).verify_cluster(volumes, tmp_path) == []
    assert runner.calls == []  # nothing mounted: cloud-init did it

    runner = RecordingRunner(mounted={str(tmp_path / "afs")})
    with pytest.raises(TaskStartError) as caught:
        MachineMounter(runner, ENDPOINTS, {}).verify_cluster(volumes, tmp_path)
    assert caught.value.code == "MountFailed"
    assert f"azureBlobFileSystems volume is not mounted at {tmp_path / 'bfs'}" in caught.value.message
