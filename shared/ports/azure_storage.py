"""The storage port over Azure Storage (or Azurite) through the SDK: its errors become the port's."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.adapters import storage
from shared.ports.contract import BadToken, BlobInfo, Message, Missing
from shared.ports.rows import PK, RK, Delete, Insert, Merge, Query, Replace, Row, StaleEtag, Upsert, Write

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONFLICTS = (404, 409, 412)


def _row(entity: Any) -> Row:
    return Row.of(entity[PK], entity[RK], entity, entity.metadata["etag"])


def _filter(query: Query) -> tuple[str, dict[str, Any]]:
    parts: list[str] = []
    params: dict[str, Any] = {}
    if query.pk is not None:
        parts.append("PartitionKey eq @pk")
        params["pk"] = query.pk
    if query.pk_range is not None:
        parts.append("PartitionKey ge @pklo and PartitionKey lt @pkhi")
        params["pklo"], params["pkhi"] = query.pk_range
    if query.rk_range is not None:
        parts.append("RowKey ge @rklo and RowKey lt @rkhi")
        params["rklo"], params["rkhi"] = query.rk_range
    for i, (name, value) in enumerate(query.equals.items()):
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a field name")
        parts.append(f"{name} eq @v{i}")
        params[f"v{i}"] = value
    return " and ".join(parts), params


def _entity(pk: str, rk: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {PK: pk, RK: rk, **fields}


def _operation(op: Write) -> tuple[Any, ...]:
    if isinstance(op, Insert):
        return ("create", _entity(op.pk, op.rk, op.fields))
    if isinstance(op, Upsert):
        mode = UpdateMode.MERGE if op.merge else UpdateMode.REPLACE
        return ("upsert", _entity(op.pk, op.rk, op.fields), {"mode": mode})
    if isinstance(op, Replace | Merge):
        mode = UpdateMode.REPLACE if isinstance(op, Replace) else UpdateMode.MERGE
        condition = {"etag": op.etag, "match_condition": MatchConditions.IfNotModified} if op.etag else {}
        return ("update", _entity(op.pk, op.rk, op.fields), {"mode": mode, **condition})
    condition = {"etag": op.etag, "match_condition": MatchConditions.IfNotModified} if op.etag else {}
    return ("delete", {PK: op.pk, RK: op.rk}, condition)


class AzureTable:
    def __init__(self, conn: str, name: str) -> None:
        self.conn, self.name = conn, name
        self.client: TableClient = storage.table(conn, name)

    def get(self, pk: str, rk: str) -> Row | None:
        try:
            return _row(self.client.get_entity(pk, rk))
        except ResourceNotFoundError:
            return None

    def _pages(self, query: Query, size: int | None, token: Any = None) -> Any:
        text, params = _filter(query)
        select = [PK, RK, *query.select] if query.select is not None else None
        if not text:
            return self.client.list_entities(select=select, results_per_page=size).by_page(continuation_token=token)
        return self.client.query_entities(text, parameters=params, select=select,
                                          results_per_page=size).by_page(continuation_token=token)

    def query(self, query: Query, page_size: int | None = None) -> Iterator[Row]:
        for page in self._pages(query, page_size):
            for entity in page:
                yield _row(entity)

    def page(self, query: Query, size: int, token: Any = None) -> tuple[list[Row], Any]:
        if token is not None and not _sdk_token(token):
            raise BadToken(f"not a continuation token of this table: {token!r}")
        pages = self._pages(query, size, token)
        try:
            items = [_row(e) for e in next(pages, [])]
        except HttpResponseError as e:
            if token is not None and e.status_code == 400:
                raise BadToken(f"the table refused the continuation token: {e.message}") from e
            raise
        return items, pages.continuation_token

    def write(self, op: Write) -> str | None:
        kind, entity, *rest = _operation(op)
        kwargs = rest[0] if rest else {}
        try:
            if kind == "create":
                meta = self.client.create_entity(entity)
            elif kind == "upsert":
                meta = self.client.upsert_entity(entity, **kwargs)
            elif kind == "update":
                meta = self.client.update_entity(entity, **kwargs)
            else:
                self.client.delete_entity(entity[PK], entity[RK], **kwargs)
                return None
        except HttpResponseError as e:
            if e.status_code in _CONFLICTS:
                raise StaleEtag(f"{entity[PK]}/{entity[RK]}: {e.status_code}") from e
            raise
        return (meta or {}).get("etag")

    def transact(self, ops: Sequence[Write]) -> list[str | None]:
        if not ops:
            return []
        try:
            written = self.client.submit_transaction([_operation(op) for op in ops])
        except TableTransactionError as e:
            if e.status_code in _CONFLICTS:
                raise StaleEtag(str(e.message)) from e
            raise
        return [None if isinstance(op, Delete) else (meta or {}).get("etag")
                for op, meta in zip(ops, written, strict=True)]

    def ensure(self) -> None:
        storage.table_service(self.conn).create_table_if_not_exists(self.name)


class AzureQueues:
    def __init__(self, conn: str) -> None:
        self.conn = conn

    def send(self, queue: str, text: str, create: bool = False) -> None:
        try:
            storage.queue(self.conn, queue).send_message(text)
        except ResourceNotFoundError as e:
            if not create:
                raise Missing(queue) from e
            storage.ensure_queue(self.conn, queue).send_message(text)

    def receive(self, queue: str, count: int = 32, visibility_timeout: int = 30) -> list[Message]:
        try:
            got = storage.queue(self.conn, queue).receive_messages(max_messages=count,
                                                                  visibility_timeout=visibility_timeout)
            return [Message(m.id, m.pop_receipt or "", m.content, m.dequeue_count or 0) for m in got]
        except ResourceNotFoundError as e:
            raise Missing(queue) from e

    def delete(self, queue: str, message: Message) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            storage.queue(self.conn, queue).delete_message(message.id, message.pop_receipt)

    def release(self, queue: str, message: Message) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            storage.queue(self.conn, queue).update_message(message.id, message.pop_receipt, visibility_timeout=0)

    def depth(self, queue: str) -> int:
        try:
            return storage.queue(self.conn, queue).get_queue_properties().approximate_message_count or 0
        except ResourceNotFoundError:
            return 0

    def ensure(self, queue: str) -> None:
        storage.ensure_queue(self.conn, queue)

    def drop(self, queue: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            storage.queue(self.conn, queue).delete_queue()


class AzureBlobs:
    def __init__(self, conn: str) -> None:
        self.conn = conn

    def list(self, container: str, prefix: str = "", metadata: bool = False) -> Iterator[BlobInfo]:
        include = ["metadata"] if metadata else None
        try:
            for blob in storage.container(self.conn, container).list_blobs(name_starts_with=prefix or None,
                                                                           include=include):
                yield BlobInfo(blob.name, int(blob.size or 0), blob.last_modified, dict(blob.metadata or {}),
                               blob.creation_time)
        except ResourceNotFoundError as e:
            raise Missing(container) from e

    def read(self, container: str, name: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            client = storage.container(self.conn, container)
            if offset == 0 and length is None:
                return client.download_blob(name).readall()
            return client.download_blob(name, offset=offset, length=length).readall()
        except ResourceNotFoundError as e:
            raise Missing(f"{container}/{name}") from e

    def size(self, container: str, name: str) -> int | None:
        try:
            return int(storage.container(self.conn, container).get_blob_client(name).get_blob_properties().size or 0)
        except ResourceNotFoundError:
            return None

    def write(self, container: str, name: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        try:
            storage.container(self.conn, container).upload_blob(name, data, overwrite=True,
                                                                metadata=dict(metadata) if metadata else None)
        except ResourceNotFoundError as e:
            raise Missing(container) from e

    def delete(self, container: str, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            storage.container(self.conn, container).delete_blob(name)

    def ensure(self, container: str) -> None:
        with contextlib.suppress(ResourceExistsError):
            storage.blob_service(self.conn).create_container(container)


class AzureStorage:
    def __init__(self, conn: str) -> None:
        self.conn = conn
        self.queues = AzureQueues(conn)
        self.blobs = AzureBlobs(conn)

    def table(self, name: str) -> AzureTable:
        return self._tables.setdefault(name, AzureTable(self.conn, name))

    @cached_property
    def _tables(self) -> dict[str, AzureTable]:
        return {}


def _sdk_token(token: Any) -> bool:
    """The shape of the SDK's continuation token: the next partition and row keys."""
    return (isinstance(token, dict) and bool(token) and set(token) <= {"PartitionKey", "RowKey"}
            and all(isinstance(v, str | None) for v in token.values()))
