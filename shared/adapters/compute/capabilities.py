"""Optional capabilities of compute providers beyond the port (`port.ComputeProvider`), and the
permanent error every Azure provider raises.

A caller checks for a capability with `isinstance(provider, TaskRunner)` (the protocols are
runtime-checkable), as dstack's backends add mixins to a minimal `Compute`:
- `ScaleInProtection` (vmss): keep busy nodes out of a capacity decrease.
- `TaskRunner` (aci): the cluster has no standing nodes; each task of a job runs as its own
  container group, which the service starts, polls, reads the logs of and deletes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable


def text(value: Any) -> str:
    """An SDK field that may be a str-valued Enum (network's ProvisioningState) as lower-case text."""
    if isinstance(value, Enum):
        value = value.value
    return str(value or "").lower()


class ComputeRejected(Exception):
    """ARM refused the request for a reason retrying will not fix (bad size, image, quota, subnet).

    Permanent: the caller records `code`/`message` on the cluster or job. Throttling and server
    errors are not this: they raise azure-core's errors after its retries, for the next tick.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@runtime_checkable
class ScaleInProtection(Protocol):
    def protect(self, cluster_key: str, node_ids: Iterable[str], busy: bool) -> None:
        """Protect busy nodes from scale-in, or release idle ones. Idempotent."""


@dataclass(frozen=True)
class FileShareMount:
    """An Azure Files share mounted into a task's container."""

    name: str  # volume name inside the group
    account_name: str
    share_name: str
    account_key: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerTask:
    """One task of one job attempt, as a container: what `TaskRunner.run_task` starts."""

    task_id: str  # the assignment id: unique per attempt and task, so a re-run is a new group
    cluster_key: str
    job_key: str
    vm_size: str  # the cluster's size: gives cores and memory
    image: str
    command: str  # a shell command line (run with /bin/sh -c)
    env: Mapping[str, str] = field(default_factory=dict)
    secure_env: Mapping[str, str] = field(default_factory=dict)  # secrets: never returned by Azure
    file_shares: tuple[FileShareMount, ...] = ()
    registry_server: str = ""
    registry_username: str = ""
    registry_password: str = ""


@dataclass(frozen=True)
class TaskStatus:
    state: str  # "pending" | "running" | "succeeded" | "failed" | "missing"
    exit_code: int | None = None
    detail: str = ""


@runtime_checkable
class TaskRunner(Protocol):
    def run_task(self, task: ContainerTask) -> None:
        """Start the task unless it exists already. Returns at once."""

    def task_status(self, task_id: str) -> TaskStatus:
        """The task's observed state ("missing" once deleted or never started)."""

    def fetch_logs(self, task_id: str) -> str:
        """The task's stdout and stderr as Azure holds them (the service writes them to blobs)."""

    def delete_task(self, task_id: str) -> None:
        """Delete the task's resources. Deleting a missing task returns silently."""
