"""A task's execution log: what the node did for it (mounts made, its user, directories, network rules,
preparation and command started with their pid and uid, exit codes, outputs uploaded, mounts undone,
the end), one line per step with its UTC time, as Batch AI's ``execution.log`` beside stdout.txt.

The file is root's, in the assignment's directory (the job cannot touch it); it is streamed like
stdout to ``<output prefix>/stdouterr/execution.log`` (``execution-<i>.log`` for task i) and copied
into the task's stdout/stderr directory at the end. It never holds a secret value: lines are written
by the agent, and every value of the task's secrets (job secrets, mount keys, registry passwords)
is masked in them in case an error message carries one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MASK = "***"


def secret_values(*docs: dict[str, Any]) -> list[str]:
    """Every secret value of a job's (or cluster's) properties: secrets, account keys, passwords."""
    found: list[str] = []

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for item in node:
                if key == "secrets" and isinstance(item, dict) and item.get("value"):
                    found.append(str(item["value"]))
                walk(item)
        elif key in ("accountKey", "password", "adminUserPassword", "sasToken") and node:
            found.append(str(node))
    for doc in docs:
        walk(doc)
    return sorted({v for v in found if len(v) >= 4}, key=len, reverse=True)


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ExecutionLog:
    def __init__(self, path: Path, secrets: Iterable[str] = ()) -> None:
        self.path = path
        self.secrets = list(secrets)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, message: str) -> None:
        for secret in self.secrets:
            message = message.replace(secret, MASK)
        with self._lock:
            if self._file.closed:
                return
            for line in message.splitlines() or [""]:
                self._file.write(f"{now_text()} {line}\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")
