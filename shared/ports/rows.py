"""Rows of the table port: frozen entities that carry their ETag, the writes that take them, and the
one optimistic read-modify-write every service uses.

A `Row` reads like the SDK's entity (``row["PartitionKey"]``, ``row.get("state")``) but cannot be
changed: a change is a write (`Insert`, `Replace`, `Merge`, `Upsert`, `Delete`) that passes the ETag
it was read with. `StaleEtag` is the one error of a write whose condition no longer holds: the row
changed (412), already exists (409) or is gone (404, for a conditional write).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

PK, RK = "PartitionKey", "RowKey"
T = TypeVar("T")


class StaleEtag(Exception):
    """The row changed since it was read (412), already exists (409) or is gone (404)."""


class Contended(Exception):
    """A row kept changing through a read-modify-write's whole attempt budget (transient: retry later)."""


@dataclass(frozen=True)
class Row(Mapping[str, Any]):
    pk: str
    rk: str
    fields: Mapping[str, Any]
    etag: str

    def __getitem__(self, name: str) -> Any:
        if name == PK:
            return self.pk
        if name == RK:
            return self.rk
        return self.fields[name]

    def __iter__(self) -> Iterator[str]:
        yield PK
        yield RK
        yield from self.fields

    def __len__(self) -> int:
        return len(self.fields) + 2

    def __hash__(self) -> int:
        return hash((self.pk, self.rk, self.etag))

    @staticmethod
    def of(pk: str, rk: str, fields: Mapping[str, Any], etag: str) -> Row:
        return Row(pk, rk, MappingProxyType({k: v for k, v in fields.items() if k not in (PK, RK)}), etag)


def key_fields(entity: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """An entity dict as (partition key, row key, the other fields)."""
    return entity[PK], entity[RK], {k: v for k, v in entity.items() if k not in (PK, RK)}


@dataclass(frozen=True)
class Insert:
    pk: str
    rk: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Upsert:
    pk: str
    rk: str
    fields: Mapping[str, Any]
    merge: bool = True


@dataclass(frozen=True)
class Replace:
    """Replace a row's fields; with an `etag` only if it still has it (None: only if it exists)."""
    pk: str
    rk: str
    fields: Mapping[str, Any]
    etag: str | None


@dataclass(frozen=True)
class Merge:
    """Merge fields into a row; with an `etag` only if it still has it (None: only if it exists)."""
    pk: str
    rk: str
    fields: Mapping[str, Any]
    etag: str | None


@dataclass(frozen=True)
class Delete:
    """Delete a row; with an `etag` only if it still has it. Deleting a row that is not there is no
    error on its own, and a `StaleEtag` in a transaction."""
    pk: str
    rk: str
    etag: str | None = None


Write = Insert | Upsert | Replace | Merge | Delete


def replace(row: Row, fields: Mapping[str, Any]) -> Replace:
    return Replace(row.pk, row.rk, fields, row.etag)


def merge(row: Row, fields: Mapping[str, Any]) -> Merge:
    return Merge(row.pk, row.rk, fields, row.etag)


def delete(row: Row) -> Delete:
    return Delete(row.pk, row.rk, row.etag)


@dataclass(frozen=True)
class Query:
    """What a table query selects: a partition (or a range of them), a row-key range [lo, hi), fields
    equal to values, and the fields to return (None: all)."""
    pk: str | None = None
    pk_range: tuple[str, str] | None = None
    rk_range: tuple[str, str] | None = None
    equals: Mapping[str, Any] = field(default_factory=dict)
    select: tuple[str, ...] | None = None


def prefix_range(prefix: str) -> tuple[str, str]:
    return prefix, prefix + "\uffff"


class Readable(Protocol):
    def get(self, pk: str, rk: str) -> Row | None: ...

    def write(self, op: Write) -> str | None: ...


def read_modify_write(table: Readable, pk: str, rk: str, decide: Callable[[Row | None], tuple[Write | None, T]],
                      attempts: int = 20) -> tuple[T, str | None]:
    """Read a row, let `decide` (pure) choose a write from it, and make the write conditional on what
    was read; on a conflict read again and decide again. `decide` returns (the write or None, the
    result); this returns (the result, the ETag the write gave the row, or None with no write). The
    one place that owns 404/409/412 handling and the attempt budget: after `attempts` conflicts in a
    row it raises `Contended`, which a trigger retries."""
    for _ in range(attempts):
        row = table.get(pk, rk)
        op, result = decide(row)
        if op is None:
            return result, None
        try:
            etag = table.write(op)
        except StaleEtag:
            continue
        return result, etag
    raise Contended(f"{pk}/{rk} kept changing")
