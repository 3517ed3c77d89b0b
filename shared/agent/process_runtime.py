"""The process runtime: a task as ``bash -c <command>`` on the node, in its own process group.
A command too long for one argument (the kernel takes at most 128 KiB per argument; the API takes
command lines of up to 256 KiB) is read by bash from an in-memory file instead.

A launch with a user (`run_as`) starts through the launcher of `shared.agent.sandbox`, which drops to
that user (and gives it its view) before it becomes the command; the launcher, not the command,
gets the environment's variables through a descriptor, so root never starts with the job's.

stdout/stderr go to the launch's files (appended; opened by the agent, never through a link the job
put in their place). Stopping signals the whole group: SIGTERM,
then SIGKILL when anything of the group is still alive after the grace. When the task's shell
exits on its own, whatever it left running in its group is killed too (unless the runtime is
told to keep leftovers: a setup task may start daemons on purpose).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from shared.agent import sandbox
from shared.agent.confine import open_file
from shared.agent.runtime import RunningTask, TaskLaunch, TaskStartError

REAP_WAIT_S = 5.0
MAX_ARGUMENT_BYTES = 100 * 1024  # safely under the kernel's 128 KiB per argument (MAX_ARG_STRLEN)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def exit_code_of(returncode: int) -> int:
    """Popen's negative "killed by signal N" as the shell reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class RunningProcess:
    def __init__(self, process: subprocess.Popen[bytes], kill_leftovers: bool) -> None:
        self.process = process
        self.pgid = process.pid  # start_new_session: the leader's pid is the group id
        self.kill_leftovers = kill_leftovers
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"pid {self.process.pid}"

    def _ended(self, returncode: int) -> int:
        if self.kill_leftovers:
            _signal_group(self.pgid, signal.SIGKILL)
        return exit_code_of(returncode)

    def poll(self) -> int | None:
        code = self.process.poll()
        return None if code is None else self._ended(code)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._ended(code)

    def stop(self, grace_seconds: float) -> None:
        with self._lock:
            _signal_group(self.pgid, signal.SIGTERM)
            deadline = time.monotonic() + max(0.0, grace_seconds)
            while time.monotonic() < deadline:
                self.process.poll()  # reap the leader, so a zombie does not keep the group "alive"
                if not _group_alive(self.pgid):
                    break
                time.sleep(0.05)
            _signal_group(self.pgid, signal.SIGKILL)
            self.process.wait()
            reaped_by = time.monotonic() + REAP_WAIT_S  # killed members linger until their new parent reaps them
            while _group_alive(self.pgid) and time.monotonic() < reaped_by:
                time.sleep(0.05)


class ProcessRuntime:
    """Implements the `TaskRuntime` port with host processes."""

    def __init__(self, kill_leftovers: bool = True) -> None:
        self.kill_leftovers = kill_leftovers

    def start(self, launch: TaskLaunch) -> RunningTask:
        command = launch.command.encode()
        script = _in_memory(command) if len(command) > MAX_ARGUMENT_BYTES else None
        argv = ["bash", "-c", launch.command] if script is None else ["bash", f"/dev/fd/{script}"]
        fds = [] if script is None else [script]
        env, cwd = launch.env, launch.cwd
        if launch.run_as is not None:
            spec = sandbox.spec_fd(argv, launch.env, launch.cwd, launch.run_as.uid, launch.run_as.gid,
                                   launch.run_as.view)
            fds.append(spec)
            argv, env, cwd = sandbox.launcher_argv(spec), {}, "/"
        try:
            with open_file(launch.stdout_path, "ab") as out, open_file(launch.stderr_path, "ab") as err:
                process = subprocess.Popen(
                    argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True, pass_fds=tuple(fds))
        except OSError as error:
            raise TaskStartError("TaskStartFailed", f"cannot start {launch.name or 'the task'} "
                                 f"(working directory {launch.cwd}): {error}") from error
        finally:
            for fd in fds:
                os.close(fd)
        return RunningProcess(process, self.kill_leftovers)


def _in_memory(data: bytes) -> int:
    """A file descriptor of an in-memory file holding `data` (bash opens it as /dev/fd/N)."""
    fd = os.memfd_create("batchai-command")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd
