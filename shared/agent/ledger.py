"""The agent's memory on disk (``<workdir>/ledger.json``): which assignments it accepted and finished,
the report of each finished one, and the outcome of the node setup. It makes redelivered messages
harmless: an assignment id that is in the ledger never runs again, a repeated assignment that ended
gets its recorded report sent again (storage may have lost the first, see `safety_pass`), and a
repeated setup message gets the recorded answer.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

KEEP_FINISHED = 500


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"assignments": {}, "setup": None}
        if path.exists():
            self._data.update(json.loads(path.read_text()))

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data))
        os.replace(tmp, self.path)

    # --- assignments --------------------------------------------------------------------------

    def accept(self, assignment_id: str, job_key: str, task_index: int) -> bool:
        """Record a new assignment as running. False when it was seen before (do not run it again)."""
        with self._lock:
            assignments: dict[str, Any] = self._data["assignments"]
            if assignment_id in assignments:
                return False
            assignments[assignment_id] = {"state": "running", "jobKey": job_key, "taskIndex": task_index}
            self._save()
            return True

    def state(self, assignment_id: str) -> str | None:
        """"running", "done", or None for an assignment never accepted here."""
        with self._lock:
            record = self._data["assignments"].get(assignment_id)
            return record.get("state") if record else None

    def report(self, assignment_id: str) -> str | None:
        """The task-exited event sent for a finished assignment (as sent), if it was recorded."""
        with self._lock:
            return (self._data["assignments"].get(assignment_id) or {}).get("report")

    def finish(self, assignment_id: str, report: str | None = None) -> None:
        with self._lock:
            assignments: dict[str, Any] = self._data["assignments"]
            record = assignments.setdefault(assignment_id, {})
            record["state"] = "done"
            if report is not None:
                record["report"] = report
            finished = [a for a, r in assignments.items() if r.get("state") == "done"]
            for old in finished[:-KEEP_FINISHED]:
                del assignments[old]
            self._save()

    def unfinished(self) -> dict[str, dict[str, Any]]:
        """Assignments accepted by an earlier run of the agent that never reported their end."""
        with self._lock:
            return {a: dict(r) for a, r in self._data["assignments"].items() if r.get("state") == "running"}

    # --- node setup ---------------------------------------------------------------------------

    def setup(self) -> dict[str, Any] | None:
        """{"key", "state": "running" | "ready" | "unusable", "error"} of the last setup message."""
        with self._lock:
            return dict(self._data["setup"]) if self._data["setup"] else None

    def set_setup(self, key: str, state: str, error: dict[str, str] | None = None) -> None:
        with self._lock:
            self._data["setup"] = {"key": key, "state": state, "error": error}
            self._save()
