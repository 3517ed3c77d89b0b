"""The local stack's processes: starting the trigger host, telling whether a recorded process still
runs (pid and start time: never a reused pid), and stopping each kind with SIGTERM. Each stop says
whether the process exited on SIGTERM; the SIGKILL after a generous grace is a last resort that a
normal run never reaches."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from shared.localstack.azurite import ROOT, stop_azurite

HOST_STOP_GRACE_S = 60.0  # the host lets running functions finish (up to its own 10 s grace), then exits
AZURITE_STOP_GRACE_S = 60.0  # it saves and exits within a second of SIGTERM
EMULATOR_STOP_GRACE_S = 120.0  # it removes the stack's machines first
HOST_QUEUE_LEASE_S = 30.0  # how long a message the host took stays invisible (renewed halfway while its function
# runs): a crashed host's messages come back within this (the Functions host's is 10 minutes)

_children: dict[int, subprocess.Popen[bytes]] = {}  # processes this Python process started, reaped on stop


def remember(process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    _children[process.pid] = process
    return process


def process(pid: int | None, started: float | None) -> psutil.Process | None:
    """The live process with this pid and start time (never a reused pid), else None."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 0.01:
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.NoSuchProcess:
        return None


def start_host(state_dir: Path, port: int, env: dict[str, str], app: str, bind: str) -> subprocess.Popen[bytes]:
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "host.stderr.log", "ab") as out:
        return remember(subprocess.Popen(
            [sys.executable, "-m", "shared.localhost", "--app", app, "--port", str(port), "--bind", bind,
             "--state-dir", str(state_dir), "--queue-lease", str(HOST_QUEUE_LEASE_S), "--no-stderr-log"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True))  # its own session: a signal to the caller's group does not reach it


def log_tail(state_dir: Path, lines: int = 20) -> str:
    parts = []
    for name in ("host.stderr.log", "host.log"):
        path = state_dir / "logs" / name
        if path.exists():
            parts.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(parts)


def wait_https(url: str, ca_file: str, host: subprocess.Popen[bytes], state_dir: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if host.poll() is not None:
            raise RuntimeError(f"the trigger host exited with {host.returncode}\n{log_tail(state_dir)}")
        try:
            httpx.get(url + "/", verify=ssl.create_default_context(cafile=ca_file), timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the trigger host did not answer at {url} in {timeout_s:.0f} s\n"
                                   f"{log_tail(state_dir)}") from None
        time.sleep(0.1)


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def _group_members(pgid: int, since: float | None) -> list[psutil.Process]:
    """Processes in the host's process group started no earlier than the host (helpers whose parent
    died included), so a reused process group id is never signalled. Nodes run in sessions of their
    own: they are not members."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and (since is None or proc.create_time() >= since - 0.01):
                members.append(proc)
    return members


def _terminate(procs: list[psutil.Process], grace_s: float) -> bool:
    """SIGTERM, wait, SIGKILL what outlived the grace. True when nothing needed SIGKILL."""
    _signal_all(procs, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    _signal_all(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)
    return not alive


def stop_host(pid: int, started: float | None) -> bool:
    """SIGTERM the host (it stops taking work, lets running functions finish and exits), then whatever
    is left of its process group."""
    proc = process(pid, started)
    clean = _terminate([proc], HOST_STOP_GRACE_S) if proc is not None else True
    reap(pid)
    leftovers = _group_members(pid, started)
    return _terminate(leftovers, HOST_STOP_GRACE_S) and clean if leftovers else clean


def stop_emulator(pid: int, started: float | None) -> bool:
    """SIGTERM: the local cloud removes the stack's machines before it exits."""
    proc = process(pid, started)
    clean = _terminate([proc], EMULATOR_STOP_GRACE_S) if proc is not None else True
    reap(pid)
    return clean


def stop_storage(pid: int, started: float | None, location: Path) -> bool:
    """SIGTERM: Azurite saves its data and exits (and its unclean-stop marker goes)."""
    clean = stop_azurite(pid, location, AZURITE_STOP_GRACE_S) if process(pid, started) is not None else True
    reap(pid)
    return clean


def reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=10)
