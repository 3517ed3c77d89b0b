"""Mounts on a machine (the agent runs with ``--config``): real mounts through the OS tools.

Cluster volumes are mounted by cloud-init at boot, as Batch AI did: the agent only checks that each
one's mount point is a mount (``mountpoint -q``). Job volumes are mounted by the steps of
`shared.agent.mount_plan` under the job's mount root before anything is created there, shared by
every process of the job's task on the node, and unmounted when the task ends. Secret files are
written 0600 in a 0700 directory and deleted once the mount is made (cifs) or undone.

Commands run through a `Runner` (the real one: `run_command`), the one seam tests replace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.agent.mount_plan import MountStep, mount_targets, plan_mounts
from shared.agent.mounts import MountedVolumes
from shared.agent.runtime import TaskStartError

log = logging.getLogger(__name__)

MOUNT_COMMAND_TIMEOUT_S = 600
Runner = Callable[[Sequence[str], Mapping[str, str]], subprocess.CompletedProcess[str]]


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a mount command with `env` added to the agent's environment. Its output goes to files, not
    pipes: FUSE mounts leave a daemon behind, which may hold whatever it inherited open for ever."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        done = subprocess.run(list(argv), env={**os.environ, **env}, stdout=out, stderr=err, text=True,
                              timeout=MOUNT_COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr or result.stdout or "").strip()[-1000:]


def _write_secret(path: Path, content: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode otherwise
        f.write(content)


def _remove_files(step: MountStep) -> None:
    for secret in step.files:
        with contextlib.suppress(FileNotFoundError):
            secret.path.unlink()


class MachineMounter:
    def __init__(self, runner: Runner, endpoints: Mapping[str, str], file_server_ips: Mapping[str, str]) -> None:
        self.runner = runner
        self.endpoints = endpoints
        self.file_server_ips = file_server_ips

    def is_mount(self, path: Path) -> bool:
        return self.runner(("mountpoint", "-q", str(path)), {}).returncode == 0

    def verify_cluster(self, volumes: Mapping[str, Any] | None, root: Path) -> list[Any]:
        """Cluster volumes were mounted at boot; MountFailed names the first one that is not."""
        for kind, target in mount_targets(volumes, root):
            if not self.is_mount(target):
                raise TaskStartError("MountFailed", f"the cluster's {kind} volume is not mounted at {target} "
                                     "(cluster volumes are mounted when the node boots: see the node's cloud-init log)")
        return []

    def mount_job(self, volumes: Mapping[str, Any] | None, root: Path, job_dir: Path) -> MountedVolumes:
        """Mount a job's volumes under `root`; undone by the result's `release`. Raises TaskStartError.
        A job's unmanaged file systems are refused: their mountCommand would run as root on the node
        (cloud-init runs the cluster's, when the node boots)."""
        if (volumes or {}).get("unmanagedFileSystems"):
            raise TaskStartError("MountFailed", "unmanagedFileSystems are mounted only for a cluster (its "
                                 "mountCommand runs as root on the node when it boots); a job cannot mount one")
        steps = plan_mounts(volumes, root, job_dir / "mount-config", self.endpoints, self.file_server_ips)
        root.mkdir(parents=True, exist_ok=True)
        done: list[MountStep] = []
        try:
            for step in steps:
                self._mount(step)
                done.append(step)
        except BaseException:
            self._unmount(done)
            raise
        return MountedVolumes(release=lambda: self._unmount(done), sources=[step.target for step in steps],
                              log=[f"{step.kind} at {step.target} ({' '.join(step.argv[:4])})" for step in steps])

    def _mount(self, step: MountStep) -> None:
        if self.is_mount(step.target):
            return  # mounted by an earlier run of this task's agent
        try:
            for directory in step.dirs:
                directory.mkdir(parents=True, exist_ok=True)
            for secret in step.files:
                _write_secret(secret.path, secret.content)
        except OSError as error:
            raise TaskStartError("MountFailed", f"cannot prepare the {step.kind} mount at {step.target}: {error}") \
                from error
        try:
            result = self.runner(step.argv, step.env)
        except (OSError, subprocess.SubprocessError) as error:
            raise TaskStartError("MountFailed", f"{step.argv[0]} could not run for {step.target}: {error}") from error
        finally:
            for secret in step.files:
                if not secret.kept:  # no reason to keep a password on disk once it was read
                    with contextlib.suppress(FileNotFoundError):
                        secret.path.unlink()
        if result.returncode != 0:
            _remove_files(step)
            raise TaskStartError("MountFailed", f"mounting the {step.kind} volume at {step.target} failed "
                                 f"({step.argv[0]} exited with {result.returncode}): {_tail(result)}")

    def _unmount(self, steps: list[MountStep]) -> None:
        """Undo mounts, last first (a mount that will not go is reported in the agent's log)."""
        for step in reversed(steps):
            if self.is_mount(step.target):
                result = self.runner(step.unmount, {})
                if result.returncode != 0:
                    log.error("unmounting %s failed (%s): %s", step.target, result.returncode, _tail(result))
            _remove_files(step)
