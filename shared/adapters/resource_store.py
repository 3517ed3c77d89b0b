"""Resource documents in Table storage: one entity per resource, its JSON split across properties.

A document is the resource's JSON (``id``, ``name``, ``type``, ``properties``, ...) plus an
``internal`` dict that only services read. Table string properties hold at most 64 KiB, so the
JSON is stored in chunks ``doc0..docN``. Every write after a read passes the read's ETag. The table is
reached through the storage port (`shared.ports`), so a store works on Azure Storage and in memory alike.

The fields of ``internal`` named in `COLUMNS` (a job's ``phase``) are also written as columns of
their own, with every write of the document, so that timers can ask the table for live work
(`query`) instead of reading every document ever stored.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared import ports
from shared.ports.contract import Table
from shared.ports.rows import (
    Contended,
    Delete,
    Insert,
    Query,
    Replace,
    Row,
    StaleEtag,
    Write,
    prefix_range,
    read_modify_write,
    replace,
)

__all__ = ["CHUNK", "COLUMNS", "MAX_CHUNKS", "Doc", "ResourceStore", "StaleEtag", "decode_token", "encode_token"]

CHUNK = 30_000  # characters per property (UTF-16 in Table storage: 60 KB < 64 KiB)
MAX_CHUNKS = 30
COLUMNS = ("phase",)


def encode_token(token: Any) -> str | None:
    """A table page's continuation token (the SDK's dict, or the in-memory table's offset) as an opaque
    URL-safe string (for ``$skiptoken``)."""
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(text: str) -> dict[str, Any] | int:
    """The continuation token of `encode_token`; ValueError when it is not one."""
    try:
        token = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except Exception as e:  # binascii.Error, UnicodeDecodeError, JSONDecodeError
        raise ValueError("not a continuation token") from e
    if isinstance(token, int) and not isinstance(token, bool) and token > 0:
        return token
    if not isinstance(token, dict) or not all(isinstance(v, str | None) for v in token.values()):
        raise ValueError("not a continuation token")
    return token


@dataclass
class Doc:
    pk: str
    rk: str
    data: dict[str, Any]
    etag: str


def _encode(data: dict[str, Any]) -> dict[str, str]:
    text = json.dumps(data, separators=(",", ":"))
    chunks = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    if len(chunks) > MAX_CHUNKS:
        raise ValueError(f"document too large ({len(text)} characters)")
    internal = data.get("internal") if isinstance(data.get("internal"), dict) else {}
    columns = {name: str(internal[name]) for name in COLUMNS if internal.get(name) is not None}
    return {**columns, **{f"doc{i}": c for i, c in enumerate(chunks)}}


def _decode(entity: Mapping[str, Any]) -> dict[str, Any]:
    parts = []
    i = 0
    while f"doc{i}" in entity:
        parts.append(entity[f"doc{i}"])
        i += 1
    return json.loads("".join(parts))


def _doc(row: Row) -> Doc:
    return Doc(row.pk, row.rk, _decode(row), row.etag)


def _written(etag: str | None) -> str:
    assert etag is not None, "a write of a row gives its ETag"
    return etag


class ResourceStore:
    """The documents of one table, through the storage port (`table`)."""

    def __init__(self, conn: str, table_name: str) -> None:
        self.table: Table = ports.of(conn).table(table_name)

    def get(self, pk: str, rk: str) -> Doc | None:
        row = self.table.get(pk, rk)
        return None if row is None else _doc(row)

    def insert(self, pk: str, rk: str, data: dict[str, Any]) -> Doc:
        """Insert a new document; StaleEtag when it exists."""
        return Doc(pk, rk, data, _written(self.table.write(Insert(pk, rk, _encode(data)))))

    def replace(self, doc: Doc, data: dict[str, Any]) -> Doc:
        """Replace a document read earlier; raises StaleEtag when it changed (or went) since."""
        return Doc(doc.pk, doc.rk, data, _written(self.table.write(Replace(doc.pk, doc.rk, _encode(data), doc.etag))))

    def update(self, pk: str, rk: str, mutate: Callable[[dict[str, Any]], None],
               expect_etag: str | None = None, attempts: int = 20) -> Doc | None:
        """Read, apply `mutate` to the document, replace it with the read's ETag; on a conflict re-read
        and apply again (`read_modify_write`), StaleEtag after `attempts` conflicts. None when the
        document does not exist. With `expect_etag` (a client's If-Match) a document whose ETag differs
        raises StaleEtag instead of being retried."""
        strict = expect_etag is not None and expect_etag != "*"

        def decide(row: Row | None) -> tuple[Write | None, dict[str, Any] | None]:
            if row is None:
                return None, None
            if strict and expect_etag != row.etag:
                raise StaleEtag(f"{pk}/{rk} changed")
            data = _decode(row)
            mutate(data)
            return replace(row, _encode(data)), data

        try:
            data, etag = read_modify_write(self.table, pk, rk, decide, 1 if strict else attempts)
        except Contended as e:
            raise StaleEtag(f"{pk}/{rk} {'changed' if strict else 'kept changing'}") from e
        return None if data is None else Doc(pk, rk, data, _written(etag))

    def delete(self, pk: str, rk: str, etag: str | None = None) -> None:
        """Delete (idempotent when no etag is given; with an etag, StaleEtag when it changed)."""
        self.table.write(Delete(pk, rk, etag or None))

    def page(self, pk: str, size: int, token: Any = None) -> tuple[list[Doc], Any]:
        """One page of a partition's documents in row-key order, and the continuation token."""
        rows, nxt = self.table.page(Query(pk=pk), size, token)
        return [_doc(r) for r in rows], nxt

    def page_prefix(self, pk_prefix: str, size: int, token: Any = None) -> tuple[list[Doc], Any]:
        """One page of the documents of every partition whose key starts with `pk_prefix`."""
        rows, nxt = self.table.page(Query(pk_range=prefix_range(pk_prefix)), size, token)
        return [_doc(r) for r in rows], nxt

    def query(self, column: str, value: str) -> Iterator[Doc]:
        """Every document whose `COLUMNS` column `column` holds `value` (e.g. the queued jobs)."""
        if column not in COLUMNS:
            raise ValueError(f"{column!r} is not a column of the documents")
        for row in self.table.query(Query(equals={column: value})):
            yield _doc(row)

    def scan(self, pk_prefix: str | None = None, pk: str | None = None) -> Iterator[Doc]:
        """Every document of a partition, or of the partitions whose key starts with a prefix."""
        if pk is not None:
            query = Query(pk=pk)
        elif pk_prefix is not None:
            query = Query(pk_range=prefix_range(pk_prefix))
        else:
            query = Query()
        for row in self.table.query(query):
            yield _doc(row)
