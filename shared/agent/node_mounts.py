"""What a node mounts, and how: the cluster's volumes once per setup (serialized: setup and tasks may
ask at once) and a job's own volumes per task, through the machine's real mounts where the agent runs
on a machine, else through the process node's `Mounter` (links, synced copies)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from shared.agent.machine_mounts import MachineMounter
from shared.agent.mount_plan import mount_targets
from shared.agent.mounts import MountedVolumes, Mounter
from shared.agent.node_storage import NodeStorage
from shared.agent.setup import cluster_volumes


class NodeMounts:
    def __init__(self, storage: NodeStorage, state_dir: Path, mount_root: Path, sync_dir: Path,
                 machine: MachineMounter | None, give_up: threading.Event, env: dict[str, str]) -> None:
        self.storage, self.state_dir, self.mount_root, self.sync_dir = storage, state_dir, mount_root, sync_dir
        self.machine, self.give_up, self.env = machine, give_up, env
        self._lock = threading.Lock()

    def cluster(self, cluster: dict[str, Any]) -> MountedVolumes:
        volumes, root = cluster_volumes(cluster), self.mount_root
        with self._lock:
            if self.machine is not None:
                self.machine.verify_cluster(volumes, root)
                return MountedVolumes(sources=[target for _, target in mount_targets(volumes, root)])
            return Mounter(self.storage, self.state_dir, self.sync_dir, self.give_up, self.env).mount(volumes, root)

    def job(self, volumes: dict[str, Any] | None, root: Path, job_dir: Path) -> MountedVolumes:
        if self.machine is not None:
            return self.machine.mount_job(volumes, root, job_dir)
        mounter = Mounter(self.storage, self.state_dir, job_dir / "sync", self.give_up, self.env)
        return mounter.mount(volumes, root, commands=False)
