"""Mounting a `MountVolumes` (cluster level under $AZ_BATCHAI_MOUNT_ROOT, job level under
$AZ_BATCHAI_JOB_MOUNT_ROOT) on a node of the process topology, where mounts are emulated (machines
mount for real: see shared.agent.machine_mounts). Every mount is idempotent: mounting again is harmless.

Emulated on the local stack (see shared.adapters.local_paths):
- azureFileShares: a symlink to the share's directory, shared by every local node. The share shows
  its `directoryMode`/`fileMode` (Batch AI's default 0777) on every entry, as a cifs mount presents
  them, so that every job user may write where Azure would let it;
- azureBlobFileSystems: a directory synchronised with the container (see `BlobMount`), open to every
  job user as blobfuse2 presents it (0777);
- fileServers: a symlink to the file server's exported directory (+ sourceDirectory);
- unmanagedFileSystems: its mountCommand run with the target path appended, as Batch AI did: only for
  the cluster's volumes (a node setup step). A job's own mountCommand is refused: it would run as
  root on the node.

Every source is resolved and must lie in its own place under the state directory (an account named
"/" or a sourceDirectory of "../.." is refused), and every mount point must lie under its root.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.adapters import local_paths
from shared.agent.blobsync import BlobMount
from shared.agent.confine import PathEscape, contained, plain_name, relative_parts
from shared.agent.node_storage import NodeStorage
from shared.agent.runtime import TaskStartError

MOUNT_COMMAND_TIMEOUT_S = 600
DEFAULT_MODE = "0777"


@dataclass
class MountedVolumes:
    """What a task's mounts leave to do when it ends: blob directories to upload back (emulated blob
    mounts) and the undo of its mounts; and the real directories the mounts reach (the only host
    paths besides the task's own directories that a container gets bound)."""
    blob_mounts: list[BlobMount] = field(default_factory=list)
    release: Callable[[], None] = lambda: None
    sources: list[Path] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what was mounted where, for the task's execution log


def mount_target(root: Path, relative: str | None) -> Path:
    """The mount point `root/relative`, which must stay under `root` (no '..', no link out of it)."""
    try:
        parts = relative_parts(relative or "", "relativeMountPath")
        if not parts:
            raise PathEscape(f"relativeMountPath {relative!r} is empty")
        target = root.joinpath(*parts)
        contained(target.parent, [root], "the mount point's directory")
    except PathEscape as error:
        raise TaskStartError("MountFailed", f"invalid relativeMountPath {relative!r}: {error}") from error
    return target


def share_source(state_dir: Path, account: str, url: str) -> Path:
    """The directory of an emulated Azure file share: <state>/fileshares/<account>/<share>, nowhere else."""
    share = urlparse(url).path.strip("/").split("/")[0]
    try:
        plain_name(account.lower(), "accountName")
        plain_name(share.lower(), "the share in azureFileUrl")
        return contained(local_paths.fileshare_dir(state_dir, account, url), [state_dir / "fileshares"],
                         "the file share")
    except PathEscape as error:
        raise TaskStartError("MountFailed", f"file share {url!r} of account {account!r}: {error}") from error


def file_server_source(state_dir: Path, server_id: str, source_directory: str | None) -> Path:
    """The exported directory of an emulated file server (+ sourceDirectory), never outside it."""
    try:
        server = contained(local_paths.fileserver_dir(state_dir, server_id), [state_dir / "fileservers"],
                           "the file server")
        return contained(server.joinpath(*relative_parts(source_directory or "", "sourceDirectory")), [server],
                         "sourceDirectory")
    except (PathEscape, KeyError) as error:
        raise TaskStartError("MountFailed", f"file server {server_id!r}: {error}") from error


def _link(target: Path, source: Path) -> None:
    source.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        if Path(os.readlink(target)) == source:
            return
        target.unlink()
    elif target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    elif target.exists():
        raise TaskStartError("MountFailed", f"mount point {target} is already in use")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(source, target, target_is_directory=True)


def present_modes(top: Path, directory_mode: int, file_mode: int) -> None:
    """Give every directory and regular file under `top` (itself included) these modes, as a cifs mount
    presents them. Links are neither followed nor changed; a file is changed through a descriptor
    opened without following a link, so one swapped in meanwhile is left alone."""
    for _, _, filenames, dir_fd in os.fwalk(top):
        os.fchmod(dir_fd, directory_mode)
        for name in filenames:
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.chmod(f"/proc/self/fd/{fd}", file_mode)
            finally:
                os.close(fd)


def _mode(text: str | None, what: str) -> int:
    try:
        return int(text or DEFAULT_MODE, 8) & 0o777
    except ValueError as error:
        raise TaskStartError("MountFailed", f"{what} {text!r} is not an octal mode") from error


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Mounter:
    def __init__(self, storage: NodeStorage, state_dir: Path, manifests_dir: Path,
                 give_up: threading.Event | None = None, env: dict[str, str] | None = None) -> None:
        self.storage = storage
        self.state_dir = state_dir
        self.manifests_dir = manifests_dir
        self.give_up = give_up
        self.env = env  # the environment of unmanaged mount commands

    def mount(self, volumes: dict[str, Any] | None, root: Path, commands: bool = True) -> MountedVolumes:
        """Mount every volume under `root`. `commands`: unmanaged file systems' mountCommand may run
        (the cluster's volumes); a job's are refused. Raises `TaskStartError("MountFailed", ...)`."""
        volumes = volumes or {}
        if not commands and volumes.get("unmanagedFileSystems"):
            raise TaskStartError("MountFailed", "unmanagedFileSystems are mounted only for a cluster (its "
                                 "mountCommand runs as root on the node when it joins); a job cannot mount one")
        mounted = MountedVolumes()
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.manifests_dir.mkdir(parents=True, exist_ok=True)
            for share in volumes.get("azureFileShares") or []:
                source = share_source(self.state_dir, share["accountName"], share["azureFileUrl"])
                _link(mount_target(root, share.get("relativeMountPath")), source)
                present_modes(source, _mode(share.get("directoryMode"), "directoryMode"),
                              _mode(share.get("fileMode"), "fileMode"))
                mounted.sources.append(source)
                mounted.log.append(f"azureFileShares {share['azureFileUrl']} at {share.get('relativeMountPath')}")
            for server in volumes.get("fileServers") or []:
                source = file_server_source(self.state_dir, (server.get("fileServer") or {}).get("id", ""),
                                            server.get("sourceDirectory"))
                _link(mount_target(root, server.get("relativeMountPath")), source)
                mounted.sources.append(source)
                mounted.log.append(f"fileServers {(server.get('fileServer') or {}).get('id')} at "
                                   f"{server.get('relativeMountPath')}")
            for fs in volumes.get("unmanagedFileSystems") or []:
                target = mount_target(root, fs.get("relativeMountPath"))
                self._unmanaged(fs["mountCommand"], target)
                mounted.sources.append(target)
                mounted.log.append(f"unmanagedFileSystems at {fs.get('relativeMountPath')}")
            for blob in volumes.get("azureBlobFileSystems") or []:
                target = mount_target(root, blob.get("relativeMountPath"))
                if target.is_symlink():
                    target.unlink()
                container = self.storage.mount_container(blob["accountName"], blob["containerName"],
                                                         blob.get("credentials"))
                digest = _digest(str(target), blob["accountName"], blob["containerName"])
                manifest = self.manifests_dir / f"blob-{digest}.json"
                mount = BlobMount(container, target, manifest, self.give_up)
                mount.download()
                present_modes(target, 0o777, 0o777)
                mounted.blob_mounts.append(mount)
                mounted.sources.append(target)
                mounted.log.append(f"azureBlobFileSystems {blob['accountName']}/{blob['containerName']} at "
                                   f"{blob.get('relativeMountPath')}")
            return mounted
        except TaskStartError:
            raise
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as error:
            raise TaskStartError("MountFailed", f"cannot mount volumes under {root}: {error}") from error

    def _unmanaged(self, command: str, target: Path) -> None:
        marker = self.manifests_dir / f"unmanaged-{_digest(command, str(target))}.done"
        if marker.exists():
            return
        target.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["bash", "-c", f"{command} {shlex.quote(str(target))}"], capture_output=True,
                                text=True, timeout=MOUNT_COMMAND_TIMEOUT_S, env=self.env, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip()[-1000:]
            raise TaskStartError("MountFailed", f"mount command exited with {result.returncode} for {target}: {tail}")
        marker.write_text(command)
