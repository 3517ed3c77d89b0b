"""Resource documents in Table storage: one entity per resource, its JSON split across properties.

A document is the resource's JSON (``id``, ``name``, ``type``, ``properties``, ...) plus an
``internal`` dict that only services read. Table string properties hold at most 64 KiB, so the
JSON is stored in chunks ``doc0..docN``. Every write after a read passes the read's ETag.

The fields of ``internal`` named in `COLUMNS` (a job's ``phase``) are also written as columns of
their own, with every write of the document, so that timers can ask the table for live work
(`query`) instead of reading every document ever stored.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters import storage

CHUNK = 30_000  # characters per property (UTF-16 in Table storage: 60 KB < 64 KiB)
MAX_CHUNKS = 30
COLUMNS = ("phase",)


def encode_token(token: Any) -> str | None:
    """A Table continuation token as an opaque URL-safe string (for ``$skiptoken``)."""
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(text: str) -> dict[str, Any]:
    """The continuation token of `encode_token`; ValueError when it is not one."""
    try:
        token = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except Exception as e:  # binascii.Error, UnicodeDecodeError, JSONDecodeError
        raise ValueError("not a continuation token") from e
    if not isinstance(token, dict) or not all(isinstance(v, str | None) for v in token.values()):
        raise ValueError("not a continuation token")
    return token


class StaleEtag(Exception):
    """The entity changed since it was read (412) or already exists on insert (409)."""


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


def _decode(entity: dict[str, Any]) -> dict[str, Any]:
    parts = []
    i = 0
    while f"doc{i}" in entity:
        parts.append(entity[f"doc{i}"])
        i += 1
    return json.loads("".join(parts))


def _doc(entity: Any) -> Doc:
    return Doc(entity["PartitionKey"], entity["RowKey"], _decode(entity), entity.metadata["etag"])


class ResourceStore:
    def __init__(self, conn: str, table_name: str) -> None:
        self.client: TableClient = storage.table(conn, table_name)

    def get(self, pk: str, rk: str) -> Doc | None:
        try:
            return _doc(self.client.get_entity(pk, rk))
        except ResourceNotFoundError:
            return None

    def insert(self, pk: str, rk: str, data: dict[str, Any]) -> Doc:
        try:
            meta = self.client.create_entity({"PartitionKey": pk, "RowKey": rk, **_encode(data)})
        except ResourceExistsError as e:
            raise StaleEtag(f"{pk}/{rk} exists") from e
        return Doc(pk, rk, data, meta["etag"])

    def replace(self, doc: Doc, data: dict[str, Any]) -> Doc:
        """Replace a document read earlier; raises StaleEtag when it changed since."""
        try:
            meta = self.client.update_entity({"PartitionKey": doc.pk, "RowKey": doc.rk, **_encode(data)},
                                             mode=UpdateMode.REPLACE, etag=doc.etag,
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceExistsError) as e:
            raise StaleEtag(f"{doc.pk}/{doc.rk} changed") from e
        except HttpResponseError as e:
            if e.status_code == 412:
                raise StaleEtag(f"{doc.pk}/{doc.rk} changed") from e
            raise
        return Doc(doc.pk, doc.rk, data, meta["etag"])

    def update(self, pk: str, rk: str, mutate: Callable[[dict[str, Any]], None],
               expect_etag: str | None = None, attempts: int = 20) -> Doc | None:
        """Read, apply `mutate` to a copy, replace with the read's ETag; on a conflict re-read and
        apply again. None when the document does not exist. With `expect_etag` (a client's
        If-Match) a document whose ETag differs raises StaleEtag instead of being retried."""
        for _ in range(attempts):
            doc = self.get(pk, rk)
            if doc is None:
                return None
            if expect_etag is not None and expect_etag not in ("*", doc.etag):
                raise StaleEtag(f"{pk}/{rk} changed")
            data = copy.deepcopy(doc.data)
            mutate(data)
            try:
                return self.replace(doc, data)
            except StaleEtag:
                if expect_etag is not None and expect_etag != "*":
                    raise
        raise StaleEtag(f"{pk}/{rk} kept changing")

    def delete(self, pk: str, rk: str, etag: str | None = None) -> None:
        """Delete (idempotent when no etag is given; with an etag, StaleEtag when it changed)."""
        try:
            if etag:
                self.client.delete_entity(pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified)
            else:
                self.client.delete_entity(pk, rk)
        except HttpResponseError as e:
            if e.status_code == 412:
                raise StaleEtag(f"{pk}/{rk} changed") from e
            if e.status_code != 404:
                raise

    def page(self, pk: str, size: int, token: Any = None) -> tuple[list[Doc], Any]:
        """One page of a partition's documents in row-key order, and the continuation token."""
        pages = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": pk},
                                           results_per_page=size).by_page(continuation_token=token)
        items = [_doc(e) for e in next(pages)]
        return items, pages.continuation_token

    def page_prefix(self, pk_prefix: str, size: int, token: Any = None) -> tuple[list[Doc], Any]:
        """One page of the documents of every partition whose key starts with `pk_prefix`."""
        pages = self.client.query_entities("PartitionKey ge @lo and PartitionKey lt @hi",
                                           parameters={"lo": pk_prefix, "hi": pk_prefix + "\uffff"},
                                           results_per_page=size).by_page(continuation_token=token)
        items = [_doc(e) for e in next(pages)]
        return items, pages.continuation_token

    def query(self, column: str, value: str) -> Iterator[Doc]:
        """Every document whose `COLUMNS` column `column` holds `value` (e.g. the queued jobs)."""
        if column not in COLUMNS:
            raise ValueError(f"{column!r} is not a column of the documents")
        for entity in self.client.query_entities(f"{column} eq @value", parameters={"value": value}):
            yield _doc(entity)

    def scan(self, pk_prefix: str | None = None, pk: str | None = None) -> Iterator[Doc]:
        """Every document of a partition, or of the partitions whose key starts with a prefix."""
        if pk is not None:
            entities = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": pk})
        elif pk_prefix is not None:
            entities = self.client.query_entities("PartitionKey ge @lo and PartitionKey lt @hi",
                                                  parameters={"lo": pk_prefix, "hi": pk_prefix + "\uffff"})
        else:
            entities = self.client.list_entities()
        for entity in entities:
            yield _doc(entity)
