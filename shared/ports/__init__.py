"""The storage port: the one way services reach tables, queues and blobs (`of`).

A connection string selects the implementation: ``memory:<name>`` a process's in-memory storage
(one per name, made with every queue and container `shared.adapters.storage` names), anything else
Azure Storage or Azurite through the SDK. `beside` issues a read on the port's shared pool, so that
a service can wait for several at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

from shared.adapters import storage
from shared.ports.azure_storage import AzureStorage
from shared.ports.contract import Storage
from shared.ports.memory_storage import MemoryStorage

MEMORY = "memory:"
T = TypeVar("T")
_reads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="storage-read")  # leaf reads only: none waits on another
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


def beside(read: Callable[..., T], *args: Any) -> Future[T]:
    """Start `read(*args)` (a storage read that submits nothing here itself) beside the caller's own work."""
    return _reads.submit(read, *args)
