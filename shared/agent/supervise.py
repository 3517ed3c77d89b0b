"""Watching one running command until it exits, is told to stop, or runs out of wall-clock time.

`TaskControl` is the one place a stop of a task is requested (service `stop`, wall clock,
preemption, agent shutdown): the first request wins, later ones are ignored.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import isodate

from shared.agent.runtime import RunningTask

DEFAULT_MAX_WALL_CLOCK = "P7D"  # the contract's default for constraints.maxWallClockTime
WALLTIME_GRACE_S = 10.0
POLL_S = 0.25


@dataclass(frozen=True)
class StopRequest:
    reason: str
    grace_s: float
    error: dict[str, str] | None = None


class TaskControl:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._request: StopRequest | None = None

    def request(self, request: StopRequest) -> bool:
        """Ask the task to stop. False when a stop was already asked (the first reason stands)."""
        with self._lock:
            if self._request is not None:
                return False
            self._request = request
            self._event.set()
            return True

    @property
    def stop(self) -> StopRequest | None:
        return self._request

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def wall_clock_limit_s(job: dict[str, object]) -> float:
    """constraints.maxWallClockTime (ISO 8601 duration) in seconds."""
    constraints = job.get("constraints") or {}
    text = str((constraints.get("maxWallClockTime") if isinstance(constraints, dict) else None)
               or DEFAULT_MAX_WALL_CLOCK)
    duration = isodate.parse_duration(text)
    if isinstance(duration, isodate.Duration):  # years/months: measured from now
        duration = duration.totimedelta(start=datetime.now(UTC))
    assert isinstance(duration, timedelta)
    return duration.total_seconds()


def walltime_stop(limit_s: float) -> StopRequest:
    return StopRequest("walltime", WALLTIME_GRACE_S, {
        "code": "JobWallClockTimeExceeded",
        "message": f"the task ran longer than its maxWallClockTime ({limit_s:g} s) and was stopped"})


class Supervisor:
    """Applies a task's stop requests and its wall-clock deadline (a monotonic time, or None)."""

    def __init__(self, control: TaskControl, deadline: float | None, limit_s: float) -> None:
        self.control = control
        self.deadline = deadline
        self.limit_s = limit_s

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.control.request(walltime_stop(self.limit_s))

    def run(self, running: RunningTask) -> tuple[int | None, StopRequest | None]:
        """Until the command ends: (exit code, the stop request that ended it or None)."""
        while True:
            code = running.wait(POLL_S)
            if code is not None:
                return code, None
            self._check_deadline()
            request = self.control.stop
            if request is not None:
                running.stop(request.grace_s)
                return running.wait(10.0), request

    def serve(self) -> StopRequest:
        """A task with nothing to run (it serves the gang): wait for its stop."""
        while not self.control.wait(POLL_S):
            self._check_deadline()
        request = self.control.stop
        assert request is not None
        return request
