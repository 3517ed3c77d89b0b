"""The storage port: the one way services reach tables, queues and blobs (`of`).

A connection string selects the implementation: ``memory:<name>`` a process's in-memory storage
(one per name, made with every queue and container `shared.adapters.storage` names), anything else
Azure Storage or Azurite through the SDK.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from shared.adapters import storage
from shared.ports.azure_storage import AzureStorage
from shared.ports.contract import Storage
from shared.ports.memory_storage import MemoryStorage

MEMORY = "memory:"
_memories: dict[str, MemoryStorage] = {}
_lock = threading.Lock()


def memory(name: str) -> str:
    """The connection string of the in-memory storage `name` (made on first use)."""
    return f"{MEMORY}{name}"


def _memory(conn: str) -> MemoryStorage:
    with _lock:
        if conn not in _memories:
            queues = [q for name in storage.QUEUES for q in (name, f"{name}-poison")]
            _memories[conn] = MemoryStorage(queues, storage.CONTAINERS)
        return _memories[conn]


@lru_cache(maxsize=16)
def _azure(conn: str) -> AzureStorage:
    return AzureStorage(conn)


def of(conn: str) -> Storage:
    return _memory(conn) if conn.startswith(MEMORY) else _azure(conn)


def forget(conn: str) -> None:
    """Drop an in-memory storage (a test's, when it ends)."""
    with _lock:
        _memories.pop(conn, None)
