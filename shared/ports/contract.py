"""The storage port's contract: what services may ask of tables, queues and blobs.

Two implementations keep it: `azure_storage` (Azure Storage or Azurite, through the SDK) and
`memory_storage` (one process, for fast service tests). Services reach storage only through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.ports.rows import Query, Row, Write


class Missing(Exception):
    """The queue, blob or blob container does not exist."""


class BadToken(ValueError):
    """A page's continuation token that this table did not give (a caller's `$skiptoken`, invented)."""


@dataclass(frozen=True)
class Message:
    id: str
    pop_receipt: str
    content: str
    dequeue_count: int


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    last_modified: datetime
    metadata: Mapping[str, str]
    created: datetime  # a blob written anew (not appended to) is created anew


class Table(Protocol):
    def get(self, pk: str, rk: str) -> Row | None: ...

    def query(self, query: Query, page_size: int | None = None) -> Iterator[Row]: ...

    def page(self, query: Query, size: int, token: Any = None) -> tuple[list[Row], Any]:
        """One page of a query in key order, and the token of the next (None after the last)."""
        ...

    def write(self, op: Write) -> str | None:
        """Make one write; the row's new ETag (None for a delete). StaleEtag when its condition fails."""
        ...

    def transact(self, ops: Sequence[Write]) -> list[str | None]:
        """Make writes to one partition (at most 100) all or none; each one's new ETag."""
        ...

    def ensure(self) -> None: ...


class Queues(Protocol):
    def send(self, queue: str, text: str, create: bool = False) -> None:
        """Put a message on a queue; Missing when there is none, unless `create` makes it."""
        ...

    def receive(self, queue: str, count: int = 32, visibility_timeout: int = 30) -> list[Message]: ...

    def delete(self, queue: str, message: Message) -> None: ...

    def release(self, queue: str, message: Message) -> None:
        """Make a received message visible again at once (its dequeue count stays)."""
        ...

    def depth(self, queue: str) -> int:
        """About how many messages wait on a queue (0 when there is none)."""
        ...

    def ensure(self, queue: str) -> None: ...

    def drop(self, queue: str) -> None:
        """Delete a queue and its messages (no error when there is none)."""
        ...


class Blobs(Protocol):
    def list(self, container: str, prefix: str = "", metadata: bool = False) -> Iterator[BlobInfo]: ...

    def read(self, container: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """A blob's bytes from `offset` (all of them, or `length`); Missing when there is none."""
        ...

    def size(self, container: str, name: str) -> int | None: ...

    def write(self, container: str, name: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None: ...

    def delete(self, container: str, name: str) -> None:
        """Delete a blob (no error when there is none)."""
        ...

    def ensure(self, container: str) -> None: ...


class Storage(Protocol):
    queues: Queues
    blobs: Blobs

    def table(self, name: str) -> Table: ...
