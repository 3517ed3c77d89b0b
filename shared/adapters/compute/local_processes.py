"""The processes of the local provider's nodes: starting a node (`local_node.py`, in a session of
its own, running the agent), telling whether a recorded process still runs (by pid and start time,
never a reused pid), signalling and waiting for one, and killing what a node left behind."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

NODE_INIT = Path(__file__).resolve().with_name("local_node.py")
NODE_REPORT_S = 30.0  # how long a node may take to report its agent's pid
POLL_S = 0.05  # between looks at a process that is not our child

_children: dict[int, subprocess.Popen[bytes]] = {}  # nodes this process started: exits reaped, codes known


@dataclass(frozen=True)
class Pid:
    """A process as recorded: its pid and start time (None: unknown, the pid alone is trusted)."""

    pid: int
    created: float | None = None

    @classmethod
    def of(cls, pid: int) -> Pid:
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.NoSuchProcess:
            return cls(pid, None)

    def alive(self) -> bool:
        child = _children.get(self.pid)
        if child is not None:
            return child.poll() is None
        try:
            proc = psutil.Process(self.pid)
            same = self.created is None or abs(proc.create_time() - self.created) < 0.05
            return same and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float) -> bool:
        """Wait until the process has exited (reaping it when it is our child); True when it has."""
        child = _children.get(self.pid)
        if child is not None:
            try:
                child.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while self.alive():  # not our child: poll, so that a zombie nobody reaps counts as exited at once
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        return True

    def exit_code(self) -> int | None:
        """Its exit code (negative: the signal that killed it) when it is our child and has exited."""
        child = _children.get(self.pid)
        return child.poll() if child is not None else None

    def forget(self) -> None:
        child = _children.pop(self.pid, None)
        if child is not None:
            child.poll()


def start_node(argv: list[str], workdir: Path, env: dict[str, str]) -> tuple[Pid, Pid]:
    """Start a node running `argv` as its agent, logging to `<workdir>/agent.log`; (node, agent)."""
    read_end, write_end = os.pipe()
    try:
        with open(workdir / "agent.log", "ab") as log:
            node = subprocess.Popen([sys.executable, str(NODE_INIT), "--report-fd", str(write_end), "--", *argv],
                                    cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, pass_fds=(write_end,), start_new_session=True)
        _children[node.pid] = node
        os.close(write_end)
        write_end = -1
        line = _read_line(read_end, NODE_REPORT_S)
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    if not line.strip().isdigit():
        node.kill()
        node.wait()
        raise RuntimeError(f"node process {node.pid} did not start its agent (log: {workdir / 'agent.log'})")
    return Pid.of(node.pid), Pid.of(int(line))


def _read_line(fd: int, timeout: float) -> str:
    """The first line written to a pipe, or "" at its end or after `timeout`."""
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in data and selector.select(timeout):
            chunk = os.read(fd, 64)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def kill_leftovers(workdir: Path) -> list[int]:
    """SIGKILL the processes a node left behind when nothing of it remained to end them: those whose
    $AZ_BATCHAI_MOUNT_ROOT or $AZ_BATCHAI_JOB_MOUNT_ROOT lies in the node's directory."""
    roots = {str(workdir) + os.sep, str(workdir.resolve()) + os.sep}
    killed = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            if any(env.get(name, "").startswith(tuple(roots))
                   for name in ("AZ_BATCHAI_MOUNT_ROOT", "AZ_BATCHAI_JOB_MOUNT_ROOT")):
                proc.kill()
                killed.append(proc.pid)
    return killed
