"""The user a job runs as on this host: one uid (and a group of the same number) per assignment.

Two jobs on one host never share a uid, so neither can read the other's files, signal its processes or
read its ``/proc/<pid>/environ``; and the agent's own files (node token, its environment) stay root's.
The uids come from a host-wide pool (`POOL`, a directory of claim files under /run: every agent of
the host draws from it, the process topology's many nodes included). A claim is a file named by the
uid holding the assignment id, locked (flock) by every agent task that uses it: the lock goes with
the process, so a claim whose agent died is free again. The tasks of one assignment on one host (a
gang whose nodes are processes of one machine) get the same uid: they are one job.

A uid is handed out only when no process runs as it (a leftover of an earlier job); the last task
of an assignment to let go of its uid ends whatever still runs as it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

POOL = Path("/run/batchai/job-uids")
FIRST_UID = 2_000_000  # above the ranges useradd and podman's subordinate ids give out first
POOL_SIZE = 100_000
NEXT = "next"


@dataclass(frozen=True)
class JobUser:
    uid: int
    gid: int  # a group of the same number: the job's files are shared with nobody
    name: str  # the same on every node of the assignment's gang (see shared.agent.job_accounts)


def account_name(assignment_id: str) -> str:
    return "job-" + hashlib.sha256(assignment_id.encode()).hexdigest()[:12]


def uid_range() -> tuple[int, int]:
    """The first and the last uid jobs run as (the firewall drops their traffic by this range)."""
    return FIRST_UID, FIRST_UID + POOL_SIZE - 1


def processes_of(uid: int) -> list[int]:
    """Pids of the processes with `uid` among their real, effective, saved or file system uids (read from
    /proc/<pid>/status: a process that made itself undumpable shows root as the owner of /proc/<pid>)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry.name}/status") as status:
            for line in status:
                if line.startswith("Uid:"):
                    if str(uid) in line.split()[1:]:
                        pids.append(int(entry.name))
                    break
    return pids


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Claim:
    """This task's hold on a uid; `release` lets it go (idempotent)."""

    def __init__(self, pool: Path, user: JobUser, fd: int) -> None:
        self.pool = pool
        self.user = user
        self._fd: int | None = fd

    def release(self) -> int | None:
        """Let go; the number of leftover processes ended when this was the uid's last task (else None)."""
        if self._fd is None:
            return None
        fd, self._fd = self._fd, None
        with _locked(self.pool / ".lock"):
            fcntl.flock(fd, fcntl.LOCK_UN)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another task of the same assignment still runs as it
                os.close(fd)
                return None
            leftovers = processes_of(self.user.uid)  # what the job left running (a daemon it started)
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(FileNotFoundError):
                (self.pool / str(self.user.uid)).unlink()
            os.close(fd)
            return len(leftovers)


class UserPool:
    def __init__(self, pool: Path = POOL, first: int = FIRST_UID, size: int = POOL_SIZE) -> None:
        self.pool = pool
        self.first = first
        self.size = size

    def claim(self, assignment_id: str) -> Claim:
        """The uid of `assignment_id` on this host: the one its other tasks here hold, else a free one."""
        self.pool.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(self.pool / ".lock"):
            held = self._held_by(assignment_id)
            if held is not None:
                return held
            start = self._next()
            for step in range(self.size):
                uid = self.first + (start + step) % self.size
                claim = self._take(uid, assignment_id)
                if claim is not None:
                    (self.pool / NEXT).write_text(str((start + step + 1) % self.size))
                    return claim
        raise RuntimeError(f"every one of the {self.size} job uids from {self.first} is in use")

    def _next(self) -> int:
        try:
            return int((self.pool / NEXT).read_text()) % self.size
        except (FileNotFoundError, ValueError):
            return 0

    def _held_by(self, assignment_id: str) -> Claim | None:
        for entry in os.scandir(self.pool):
            if not entry.name.isdigit():
                continue
            fd = os.open(entry.path, os.O_RDWR | os.O_CLOEXEC)
            try:
                if os.pread(fd, 4096, 0).decode() == assignment_id and _in_use(fd):
                    fcntl.flock(fd, fcntl.LOCK_SH)
                    return Claim(self.pool, JobUser(int(entry.name), int(entry.name), account_name(assignment_id)), fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        return None

    def _take(self, uid: int, assignment_id: str) -> Claim | None:
        fd = os.open(self.pool / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if processes_of(uid):  # a leftover of an earlier job still runs as it
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.pwrite(fd, assignment_id.encode(), 0)
        fcntl.flock(fd, fcntl.LOCK_SH)  # from exclusive to shared: other tasks of the assignment may join
        return Claim(self.pool, JobUser(uid, uid, account_name(assignment_id)), fd)


def _in_use(fd: int) -> bool:
    """Some task holds this claim (its lock cannot be had exclusively)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False
