"""Mounting a `MountVolumes` (cluster level under $AZ_BATCHAI_MOUNT_ROOT, job level under
$AZ_BATCHAI_JOB_MOUNT_ROOT) on a node of the process topology, where mounts are emulated (machines
mount for real: see shared.agent.machine_mounts). Every mount is idempotent: mounting again is harmless.

Emulated on the local stack (see shared.adapters.local_paths):
- azureFileShares: a symlink to the share's directory, shared by every local node;
- azureBlobFileSystems: a directory synchronised with the container (see `BlobMount`);
- fileServers: a symlink to the file server's exported directory (+ sourceDirectory);
- unmanagedFileSystems: its mountCommand run with the target path appended, as Batch AI did.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.adapters import local_paths
from shared.agent.blobsync import BlobMount
from shared.agent.node_storage import NodeStorage
from shared.agent.runtime import TaskStartError

MOUNT_COMMAND_TIMEOUT_S = 600


@dataclass
class MountedVolumes:
    """What a task's mounts leave to do when it ends: blob directories to upload back (emulated blob
    mounts) and the undo of its mounts."""
    blob_mounts: list[BlobMount] = field(default_factory=list)
    release: Callable[[], None] = lambda: None


def _target(root: Path, relative: str | None) -> Path:
    rel = (relative or "").strip("/")
    target = (root / rel) if rel else root
    if not rel or ".." in Path(rel).parts:
        raise TaskStartError("MountFailed", f"invalid relativeMountPath {relative!r}")
    return target


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

    def mount(self, volumes: dict[str, Any] | None, root: Path) -> list[BlobMount]:
        """Mount every volume under `root`; the blob mounts (to upload after each task).
        Raises `TaskStartError("MountFailed", ...)`."""
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.manifests_dir.mkdir(parents=True, exist_ok=True)
            volumes = volumes or {}
            for share in volumes.get("azureFileShares") or []:
                source = local_paths.fileshare_dir(self.state_dir, share["accountName"], share["azureFileUrl"])
                _link(_target(root, share.get("relativeMountPath")), source)
            for server in volumes.get("fileServers") or []:
                fileserver_id = (server.get("fileServer") or {}).get("id", "")
                source = local_paths.fileserver_dir(self.state_dir, fileserver_id)
                if server.get("sourceDirectory"):
                    source = source / server["sourceDirectory"].strip("/")
                _link(_target(root, server.get("relativeMountPath")), source)
            for fs in volumes.get("unmanagedFileSystems") or []:
                self._unmanaged(fs["mountCommand"], _target(root, fs.get("relativeMountPath")))
            mounts = []
            for blob in volumes.get("azureBlobFileSystems") or []:
                target = _target(root, blob.get("relativeMountPath"))
                if target.is_symlink():
                    target.unlink()
                container = self.storage.mount_container(blob["accountName"], blob["containerName"],
                                                         blob.get("credentials"))
                digest = _digest(str(target), blob["accountName"], blob["containerName"])
                manifest = self.manifests_dir / f"blob-{digest}.json"
                mount = BlobMount(container, target, manifest, self.give_up)
                mount.download()
                mounts.append(mount)
            return mounts
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
