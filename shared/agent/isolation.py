"""How jobs are kept apart from each other and from the node on this node: the settings the agent
starts with, and what a task takes from them (`JobIsolation.begin`).

- Users: each assignment runs as its own uid from the host's pool (`shared.agent.job_users`) when
  the agent is root (always on a machine; in the process topology too, where tests run as root). An
  agent that is not root cannot switch users: its jobs run as itself, and their logs say so.
- View: besides its own directories and the mounts, a job must reach the node's Python (the
  interpreter the node's jobs name); in the process topology it sees nothing else of the stack's
  state directory (other nodes, shares, jobs); see `shared.agent.sandbox`.
- Accounts: on a machine, a job's user gets an account named after its assignment, so that mpirun
  reaches the job's user on the gang's other nodes over ssh (`shared.agent.job_accounts`).
- Network: on a machine, the job uids' traffic to IMDS, the WireServer and the node API is rejected
  (`shared.agent.firewall`); a process node gets no rules (the host's network is not the agent's).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shared.agent.firewall import Destination, Firewall
from shared.agent.job_accounts import JobAccounts
from shared.agent.job_users import Claim, UserPool, uid_range


def node_python() -> tuple[Path, ...]:
    """The node's Python installation (a venv and the interpreter it was made from)."""
    return tuple(sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
                         Path(sys.executable).resolve().parent}))


@dataclass
class JobIsolation:
    users: UserPool | None = None
    firewall: Firewall | None = None
    reachable: tuple[Path, ...] = ()  # paths every job must reach besides its own (the node's Python)
    hidden: tuple[Path, ...] = ()  # where a job sees only what it was given (see shared.agent.sandbox)
    accounts: JobAccounts | None = None  # a machine's: job users get accounts (ssh between the gang's nodes)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _installed: list[Destination] | None = None

    def claim(self, assignment_id: str) -> Claim | None:
        return self.users.claim(assignment_id) if self.users is not None else None

    def network(self) -> list[Destination] | None:
        """The destinations closed to jobs (rules installed on the first call); None: no rules here.
        Raises FirewallError: a machine whose jobs could reach its identity runs no job."""
        if self.firewall is None:
            return None
        with self._lock:
            if self._installed is None:
                self._installed = self.firewall.install()
            return self._installed


def process_node(state_dir: Path | None = None) -> JobIsolation:
    """A node of the process topology: users when the agent is root, no network rules; in the stack's
    state directory (every node, share and job of the stack) a job sees only what it was given."""
    return JobIsolation(users=UserPool() if os.geteuid() == 0 else None, reachable=node_python(),
                        hidden=(state_dir,) if state_dir is not None else ())


def machine(closed_urls: Iterable[str]) -> JobIsolation:
    """A machine: users (the agent is root) and the network rules closing `closed_urls` to jobs."""
    first, last = uid_range()
    return JobIsolation(users=UserPool(), firewall=Firewall(first, last, closed_urls), reachable=node_python(),
                        accounts=JobAccounts())
