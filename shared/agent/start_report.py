"""When a task's ``task-started`` is sent: only once the task has run `DELAY_S`. A task that ends
sooner sends no ``task-started``; its ``task-exited`` carries the start (``started_at``) and the
service records both moves in one write. The start's stamp is the moment the task started either
way; only the job's ``running`` state shows up to `DELAY_S` later. ``task-started`` always goes
before ``task-exited``: `close` waits for a send under way; a ``task-started`` that could not be sent
leaves the start to ``task-exited``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

DELAY_S = 1.0


class StartReport:
    def __init__(self, send: Callable[[str], object], delay_s: float = DELAY_S) -> None:
        self._send = send  # sends task-started stamped with the given start time
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._at: str | None = None
        self._done = False  # sent, or closed before it was due
        self._timer: threading.Timer | None = None

    def started(self, at: str) -> None:
        """The task started at `at`: send task-started after the delay, unless it is closed first."""
        self._at = at
        self._timer = threading.Timer(self._delay_s, self._due)
        self._timer.daemon = True
        self._timer.start()

    def _due(self) -> None:
        with self._lock:
            if self._done or self._at is None:
                return
            try:
                self._send(self._at)
            except Exception as error:  # e.g. the agent gave up on storage: the end carries the start
                log.warning("task-started was not sent (%s: %s); the task's end will carry its start",
                            type(error).__name__, error)
                return
            self._done = True

    def close(self) -> str | None:
        """The task ended: the start it still has to report (for task-exited), or None when
        task-started went already or the task never started."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._done:
                return None
            self._done = True
            return self._at
