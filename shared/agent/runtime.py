"""The task runtime port of the node agent: processes on the host, or containers via Docker API.

A runtime starts one task and writes its stdout/stderr to the files named in the launch; the
agent streams those files to blob storage. Stopping sends SIGTERM, then SIGKILL after the grace.
A launch with `run_as` runs as that user (the job's own, see shared.agent.job_users); without it,
as the agent's (a node setup task, or an agent that is not root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

#: For each directory on the way to the task's paths that its user may not enter: the entries it
#: must reach there (see shared.agent.sandbox).
View = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    view: View = ()


@dataclass
class TaskLaunch:
    command: str  # run with bash -c (or sh -c in a container without bash)
    env: dict[str, str]
    cwd: str
    stdout_path: str
    stderr_path: str
    container: dict[str, Any] | None = None  # the job's containerSettings, when it asks for one
    binds: list[str] = field(default_factory=list)  # host directories to bind at the same path
    host_network: bool = False
    gpus: int = 0
    gpu_ids: list[int] | None = None  # the node's GPU indices the task gets (None: any `gpus` of them)
    name: str = ""  # a label for the process or container
    labels: dict[str, str] = field(default_factory=dict)  # extra container labels (job, assignment) for cleanup
    run_as: RunAs | None = None  # the job's user; None: the agent's own
    home: str = ""  # $HOME of a container task (the host's is never passed into one)


class RunningTask(Protocol):
    def describe(self) -> str:
        """What runs, for the task's execution log ("pid 42", "container 3f2a...")."""

    def poll(self) -> int | None:
        """The exit code if the task ended, else None."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` seconds; the exit code, or None if still running."""

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after `grace_seconds`. Idempotent."""


class TaskRuntime(Protocol):
    def start(self, launch: TaskLaunch) -> RunningTask:
        """Start the task. Raises `TaskStartError` when it cannot start (the job fails with it)."""


class TaskStartError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
