"""A task's directories made on its node, contained, held and owned by the task's user.

Before the task runs (its mounts are made):
- the assignment's directory (``jobs/<id>``) is root's, entered only by the job's group (0710): its
  manifests and mount secrets stay root's, and no other job can reach what lies in it;
- the task's own directories (working directory, temp, home, the gang's shared temp) are its user's, 0700;
- the cluster's mount root is open to every job as Azure Batch's node-shared directory is (1777: a job
  may add its own entries, never remove or replace the mounts'); the job's mount root is root's (0755);
- its stdout/stderr directory and output directories, derived from the job's prefixes, are resolved
  and must lie under a mount root, a mount, or the assignment's directory; each is created, held open
  (see shared.agent.confine) and given to the task's user (0750). On a shared mount (a share, where
  other nodes' users of the same job write too) it is open to all (0777), as a cifs mount presents it.

When the task ends its directories are closed, and the assignment's directory becomes root's alone
(0700): a later job that gets the same uid finds nothing of this one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shared.agent.confine import HeldDir, PathEscape, contained, touch, under
from shared.agent.job_users import JobUser
from shared.agent.layout import TaskDirs
from shared.agent.runtime import TaskStartError

NODE_SHARED_MODE = 0o1777
OWN_MODE = 0o750
SHARED_MODE = 0o777


@dataclass
class PreparedDirs:
    stdouterr: HeldDir
    outputs: dict[str, HeldDir] = field(default_factory=dict)
    user: JobUser | None = None
    shared: list[Path] = field(default_factory=list)  # real paths of mounts other users write into

    def held(self) -> list[HeldDir]:
        return [self.stdouterr, *self.outputs.values()]

    def file(self, name: str) -> Path:
        """A file of the stdout/stderr directory, made now, its user's (reached through the held directory)."""
        path = self.stdouterr.entry(name)
        touch(path)
        if self.user is not None:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.fchown(fd, self.user.uid, self.user.gid)
            finally:
                os.close(fd)
        return path

    def close(self) -> None:
        for held in self.held():
            held.close()


def _own(path: Path, user: JobUser, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, user.uid, user.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _hold(path: Path, roots: list[Path], user: JobUser | None, shared: list[Path], what: str) -> HeldDir:
    try:
        real = contained(path, roots, what)
        real.mkdir(parents=True, exist_ok=True)
        held = HeldDir(real, roots, what)
    except PathEscape as error:
        raise TaskStartError("InvalidPath", str(error)) from error
    if user is not None:
        if under(held.path, shared):
            os.fchmod(held.fd, SHARED_MODE)
        else:
            os.fchown(held.fd, user.uid, user.gid)
            os.fchmod(held.fd, OWN_MODE)
    return held


def prepare(dirs: TaskDirs, user: JobUser | None, mount_sources: Iterable[Path]) -> PreparedDirs:
    """Make the task's directories (see the module docstring). Raises TaskStartError: InvalidPath for a
    directory outside its roots, TaskPreparationFailed when one cannot be made."""
    shared = [Path(p).resolve() for p in mount_sources]
    roots = [dirs.mount_root, dirs.job_mount_root, dirs.job_dir, *shared]
    held: list[HeldDir] = []
    try:
        for root in (dirs.mount_root, dirs.job_mount_root):
            root.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.chown(dirs.job_dir, 0, user.gid)
            dirs.job_dir.chmod(0o710)
            dirs.mount_root.chmod(NODE_SHARED_MODE)
            for private in dirs.private_dirs():
                _own(private, user, 0o700)
        else:
            for private in dirs.private_dirs():
                private.mkdir(parents=True, exist_ok=True)
        prepared = PreparedDirs(_hold(dirs.stdouterr, roots, user, shared, "the stdout/stderr directory"),
                                user=user, shared=shared)
        held.append(prepared.stdouterr)
        for output_id, path in dirs.outputs.items():
            prepared.outputs[output_id] = _hold(path, roots, user, shared, f"output directory {output_id}")
            held.append(prepared.outputs[output_id])
        return prepared
    except TaskStartError:
        for h in held:
            h.close()
        raise
    except OSError as error:
        for h in held:
            h.close()
        raise TaskStartError("TaskPreparationFailed", f"cannot create the job's directories: {error}") from error


def lock_away(path: Path) -> None:
    """Root's alone: what the job left there is out of reach of any later job (that may get its uid)."""
    with contextlib.suppress(FileNotFoundError):
        os.chown(path, 0, 0, follow_symlinks=False)
        path.chmod(0o700)
