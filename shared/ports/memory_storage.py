"""The storage port in one process's memory, with the same ETag, conflict and transaction rules as
Table storage, for service tests that run in milliseconds. Nothing here is durable."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.adapters import queue_signals
from shared.ports.contract import BadToken, BlobInfo, Message, Missing
from shared.ports.rows import Delete, Insert, Merge, Query, Replace, Row, StaleEtag, Upsert, Write

_etags = itertools.count(1)


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}  # Table storage keeps no null properties


def _selects(row: Row, query: Query) -> bool:
    if query.pk is not None and row.pk != query.pk:
        return False
    if query.pk_range is not None and not query.pk_range[0] <= row.pk < query.pk_range[1]:
        return False
    if query.rk_range is not None and not query.rk_range[0] <= row.rk < query.rk_range[1]:
        return False
    return all(row.fields.get(name) == value for name, value in query.equals.items())


def _projected(row: Row, query: Query) -> Row:
    if query.select is None:
        return row
    return Row.of(row.pk, row.rk, {k: row.fields[k] for k in query.select if k in row.fields}, row.etag)


class MemoryTable:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Row] = {}
        self._lock = threading.Lock()

    def get(self, pk: str, rk: str) -> Row | None:
        return self._rows.get((pk, rk))

    def _matching(self, query: Query) -> list[Row]:
        with self._lock:
            rows = list(self._rows.values())
        return [_projected(r, query) for r in sorted(rows, key=lambda r: (r.pk, r.rk)) if _selects(r, query)]

    def query(self, query: Query, page_size: int | None = None) -> Iterator[Row]:
        yield from self._matching(query)

    def page(self, query: Query, size: int, token: Any = None) -> tuple[list[Row], Any]:
        if token is not None and (not isinstance(token, int) or isinstance(token, bool) or token < 0):
            raise BadToken(f"not a continuation token of this table: {token!r}")
        rows = self._matching(query)
        start = token or 0
        return rows[start:start + size], (start + size if start + size < len(rows) else None)

    def write(self, op: Write) -> str | None:
        return self.transact([op], alone=True)[0]

    def transact(self, ops: Sequence[Write], alone: bool = False) -> list[str | None]:
        with self._lock:
            staged = dict(self._rows)
            etags = [_apply(staged, op, alone) for op in ops]
            self._rows = staged
        return etags

    def ensure(self) -> None:
        pass


def _apply(rows: dict[tuple[str, str], Row], op: Write, alone: bool) -> str | None:
    key = (op.pk, op.rk)
    current = rows.get(key)
    etag = f'W/"datetime\'{next(_etags)}\'"'
    if isinstance(op, Insert):
        if current is not None:
            raise StaleEtag(f"{op.pk}/{op.rk} exists")
        rows[key] = Row.of(op.pk, op.rk, _fields(op.fields), etag)
    elif isinstance(op, Upsert):
        base = dict(current.fields) if current is not None and op.merge else {}
        rows[key] = Row.of(op.pk, op.rk, _fields({**base, **op.fields}), etag)
    elif isinstance(op, Replace | Merge):
        if current is None or op.etag is not None and op.etag != current.etag:
            raise StaleEtag(f"{op.pk}/{op.rk} changed")
        base = dict(current.fields) if isinstance(op, Merge) else {}
        rows[key] = Row.of(op.pk, op.rk, _fields({**base, **op.fields}), etag)
    else:
        assert isinstance(op, Delete)
        if current is None:
            if not alone:
                raise StaleEtag(f"{op.pk}/{op.rk} is gone")
            return None
        if op.etag is not None and op.etag != current.etag:
            raise StaleEtag(f"{op.pk}/{op.rk} changed")
        del rows[key]
        return None
    return etag


@dataclass
class _Waiting:
    message: Message
    visible_at: float = 0.0


@dataclass
class MemoryQueues:
    names: set[str] = field(default_factory=set)
    _messages: dict[str, list[_Waiting]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, queue: str, text: str, create: bool = False) -> None:
        with self._lock:
            if queue not in self._messages:
                if not create:
                    raise Missing(queue)
                self._messages[queue] = []
            self._messages[queue].append(_Waiting(Message(uuid.uuid4().hex, "", text, 0)))
        queue_signals.message_sent(queue)

    def receive(self, queue: str, count: int = 32, visibility_timeout: int = 30) -> list[Message]:
        now = time.monotonic()
        with self._lock:
            if queue not in self._messages:
                raise Missing(queue)
            out = []
            for waiting in self._messages[queue]:
                if len(out) == count:
                    break
                if waiting.visible_at <= now:
                    m = waiting.message
                    waiting.message = Message(m.id, uuid.uuid4().hex, m.content, m.dequeue_count + 1)
                    waiting.visible_at = now + visibility_timeout
                    out.append(waiting.message)
            return out

    def delete(self, queue: str, message: Message) -> None:
        with self._lock:
            waiting = self._messages.get(queue, [])
            self._messages[queue] = [w for w in waiting if w.message.pop_receipt != message.pop_receipt
                                     or w.message.id != message.id]

    def release(self, queue: str, message: Message) -> None:
        with self._lock:
            for waiting in self._messages.get(queue, []):
                if waiting.message.id == message.id and waiting.message.pop_receipt == message.pop_receipt:
                    waiting.visible_at = 0.0

    def depth(self, queue: str) -> int:
        return len(self._messages.get(queue, []))

    def ensure(self, queue: str) -> None:
        with self._lock:
            self._messages.setdefault(queue, [])

    def drop(self, queue: str) -> None:
        with self._lock:
            self._messages.pop(queue, None)


@dataclass(frozen=True)
class _Blob:
    data: bytes
    metadata: Mapping[str, str]
    modified: datetime


@dataclass
class MemoryBlobs:
    _containers: dict[str, dict[str, _Blob]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _container(self, container: str) -> dict[str, _Blob]:
        if container not in self._containers:
            raise Missing(container)
        return self._containers[container]

    def list(self, container: str, prefix: str = "", metadata: bool = False) -> Iterator[BlobInfo]:
        with self._lock:
            blobs = sorted((n, b) for n, b in self._container(container).items() if n.startswith(prefix))
        for name, blob in blobs:
            yield BlobInfo(name, len(blob.data), blob.modified, dict(blob.metadata) if metadata else {}, blob.modified)

    def read(self, container: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        blob = self._container(container).get(name)
        if blob is None:
            raise Missing(f"{container}/{name}")
        return blob.data[offset:] if length is None else blob.data[offset:offset + length]

    def size(self, container: str, name: str) -> int | None:
        blob = self._containers.get(container, {}).get(name)
        return None if blob is None else len(blob.data)

    def write(self, container: str, name: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self._container(container)[name] = _Blob(bytes(data), dict(metadata or {}), datetime.now(UTC))

    def delete(self, container: str, name: str) -> None:
        with self._lock:
            self._containers.get(container, {}).pop(name, None)

    def ensure(self, container: str) -> None:
        with self._lock:
            self._containers.setdefault(container, {})


class MemoryStorage:
    """Tables exist once named; queues and containers once ensured (as `storage.ensure_all` does)."""

    def __init__(self, queues: Sequence[str] = (), containers: Sequence[str] = ()) -> None:
        self.queues = MemoryQueues()
        self.blobs = MemoryBlobs()
        self._tables: dict[str, MemoryTable] = {}
        self._lock = threading.Lock()
        for name in queues:
            self.queues.ensure(name)
        for name in containers:
            self.blobs.ensure(name)

    def table(self, name: str) -> MemoryTable:
        with self._lock:
            return self._tables.setdefault(name, MemoryTable())
