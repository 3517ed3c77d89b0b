"""A local node's own process, its "init": `python local_node.py --report-fd N -- AGENT ARGV...`.

The local provider starts every node as this process, in a session of its own (so neither the
trigger host's signals nor its death reach the node). It runs the node agent as its only child and
is the subreaper of everything below it: tasks run in their own sessions and daemons double-fork,
but whatever the agent starts is re-parented here, never to init. When the agent exits, for any
reason (kill -9 included), every process of the node is killed and reaped, and this process exits
as the agent did (same code, or killed by the same signal): a node's processes die with it, as a
VM's do, so a job requeued elsewhere never overlaps an orphan of this node.

SIGTERM here powers the node off: the agent and every process of the node are killed at once and
nothing is reported (the service finds the node gone, as after a VM's power loss). SIGTERM to the
agent is the agent's own graceful stop (it stops and reports its tasks); the node then exits as
above. Should this process be killed, the kernel kills the agent (PR_SET_PDEATHSIG) and the provider
ends what is left when it observes the node (`local_processes.kill_leftovers`).

Standard library only, run by path: a node costs one small interpreter, not the service's imports.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
KILL_DEADLINE_S = 30.0  # a process stuck in the kernel (D state) may take a while to die


class PowerOff(Exception):
    """SIGTERM: the node powers off."""


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _children_of(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc: no third-party code in a node's init)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] != b"Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _reap() -> list[tuple[int, int]]:
    """Reap every exited child without blocking: [(pid, wait status)]."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def kill_all() -> None:
    """SIGKILL every process of the node and reap them (orphans are re-parented here, then reaped)."""
    deadline = time.monotonic() + KILL_DEADLINE_S
    while time.monotonic() < deadline:
        _reap()
        remaining = _children_of(os.getpid())
        if not remaining:
            return
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _exit_like(status: int) -> None:
    """Exit with the agent's code, or die by the signal that killed it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(os.waitstatus_to_exitcode(status))


def _start_agent(argv: Sequence[str]) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the node died before the line above: do not run unowned
                os._exit(1)
            os.execvp(argv[0], list(argv))
        except BaseException as error:  # noqa: BLE001 - the child must never return into the parent's code
            os.write(2, f"cannot start the node agent {argv[0]}: {error}\n".encode())
        os._exit(127)
    return pid


def _power_off(*_: object) -> None:
    raise PowerOff


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="local_node.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report-fd", type=int, required=True, help="where the agent's pid is written, then closed")
    parser.add_argument("agent", nargs=argparse.REMAINDER, help="-- and the agent's argv")
    args = parser.parse_args(argv)
    command = args.agent[1:] if args.agent[:1] == ["--"] else args.agent
    if not command:
        parser.error("the agent's argv is missing")
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _power_off)
    status = None
    try:
        agent = _start_agent(command)
        os.write(args.report_fd, f"{agent}\n".encode())
        os.close(args.report_fd)
        while status is None:
            try:
                pid, code = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == agent:
                status = code
    except PowerOff:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        kill_all()
        sys.exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kill_all()
    _exit_like(status if status is not None else 127 << 8)


if __name__ == "__main__":
    main()
