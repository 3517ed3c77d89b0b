"""The port's contract, held by both implementations: ETags, conflicts, transactions, queries, pages,
queues and blobs."""

from __future__ import annotations

import threading
import uuid

import pytest

from shared.adapters import storage
from shared.ports.contract import Missing, Storage
from shared.ports.rows import (
    Contended,
    Delete,
    Insert,
    Merge,
    Query,
    Replace,
    Row,
    StaleEtag,
    Upsert,
    delete,
    merge,
    prefix_range,
    read_modify_write,
    replace,
)


def _pk() -> str:
    return uuid.uuid4().hex


def test_a_row_carries_its_etag_and_reads_like_an_entity(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    etag = table.write(Insert(pk, "a", {"state": "idle", "cores": 4}))
    row = table.get(pk, "a")
    assert row is not None and row.etag == etag
    assert (row["PartitionKey"], row["RowKey"], row["state"], row.get("cores"), row.get("none")) == (
        pk, "a", "idle", 4, None)
    assert dict(row) == {"PartitionKey": pk, "RowKey": "a", "state": "idle", "cores": 4}
    with pytest.raises(TypeError):
        row.fields["state"] = "busy"  # type: ignore[index]


def test_a_write_conditional_on_an_old_etag_is_stale(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    table.write(Insert(pk, "a", {"n": 1}))
    first = table.get(pk, "a")
    assert first is not None
    table.write(merge(first, {"n": 2}))
    for op in (replace(first, {"n": 3}), merge(first, {"n": 3}), delete(first)):
        with pytest.raises(StaleEtag):
            table.write(op)
    row = table.get(pk, "a")
    assert row is not None and row["n"] == 2


def test_insert_of_an_existing_row_and_update_of_a_missing_one_are_stale(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    table.write(Insert(pk, "a", {}))
    with pytest.raises(StaleEtag):
        table.write(Insert(pk, "a", {}))
    for op in (Replace(pk, "b", {"n": 1}, None), Merge(pk, "b", {"n": 1}, None)):
        with pytest.raises(StaleEtag):
            table.write(op)
    assert table.get(pk, "b") is None


def test_merge_keeps_other_fields_and_replace_drops_them(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    table.write(Upsert(pk, "a", {"x": 1, "y": 2}))
    table.write(Upsert(pk, "a", {"y": 3}))
    assert dict(table.get(pk, "a") or {}) == {"PartitionKey": pk, "RowKey": "a", "x": 1, "y": 3}
    table.write(Upsert(pk, "a", {"z": 4}, merge=False))
    assert dict(table.get(pk, "a") or {}) == {"PartitionKey": pk, "RowKey": "a", "z": 4}
    row = table.get(pk, "a")
    assert row is not None
    table.write(replace(row, {"w": 5}))
    assert dict(table.get(pk, "a") or {}) == {"PartitionKey": pk, "RowKey": "a", "w": 5}


def test_deleting_a_missing_row_is_no_error_alone(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    assert table.write(Delete(pk, "gone")) is None


def test_a_transaction_is_all_or_none(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    table.write(Insert(pk, "node|1", {"state": "idle"}))
    node = table.get(pk, "node|1")
    assert node is not None
    table.write(merge(node, {"state": "idle", "touched": True}))
    with pytest.raises(StaleEtag):
        table.transact([Insert(pk, "asg|j", {"job": "j"}), merge(node, {"state": "busy"})])
    assert table.get(pk, "asg|j") is None
    assert (table.get(pk, "node|1") or {}).get("state") == "idle"
    fresh = table.get(pk, "node|1")
    assert fresh is not None
    etags = table.transact([Insert(pk, "asg|j", {"job": "j"}), merge(fresh, {"state": "busy"})])
    assert etags == [(table.get(pk, "asg|j") or Row.of(pk, "", {}, "")).etag, (table.get(pk, "node|1")).etag]
    with pytest.raises(StaleEtag):
        table.transact([Delete(pk, "asg|missing"), Insert(pk, "x", {})])
    assert table.get(pk, "x") is None


def test_queries_select_by_partition_key_range_and_field(port: Storage) -> None:
    table, pk, other = port.table(storage.T_SCHED), "q" + _pk(), "q" + _pk()
    for rk, state in (("asg|a", "x"), ("node|1", "idle"), ("node|2", "busy"), ("pend|1", "x")):
        table.write(Insert(pk, rk, {"state": state}))
    table.write(Insert(other, "node|9", {"state": "idle"}))
    nodes = list(table.query(Query(pk=pk, rk_range=prefix_range("node|"))))
    assert [r.rk for r in nodes] == ["node|1", "node|2"]
    assert [r.rk for r in table.query(Query(pk=pk, equals={"state": "idle"}))] == ["node|1"]
    both = sorted(r.pk for r in table.query(Query(rk_range=prefix_range("node|"), equals={"state": "idle"}))
                  if r.pk in (pk, other))
    assert both == sorted([pk, other])
    picked = next(iter(table.query(Query(pk=pk, rk_range=prefix_range("asg|"), select=("state",)))))
    assert dict(picked) == {"PartitionKey": pk, "RowKey": "asg|a", "state": "x"}


def test_pages_follow_each_other_to_the_end(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    for i in range(5):
        table.write(Insert(pk, f"r{i}", {}))
    seen, token = [], None
    while True:
        items, token = table.page(Query(pk=pk), 2, token)
        seen += [r.rk for r in items]
        if token is None:
            break
    assert seen == [f"r{i}" for i in range(5)]


def test_read_modify_write_decides_again_after_a_conflict(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    table.write(Insert(pk, "c", {"n": 0}))
    interfered = []

    def bump(row: Row | None) -> tuple[Merge | None, int]:
        assert row is not None
        if not interfered:  # another writer gets in between our read and our write, once
            interfered.append(True)
            table.write(Merge(pk, "c", {"n": row["n"] + 10}, None))
        return merge(row, {"n": row["n"] + 1}), row["n"] + 1

    result, etag = read_modify_write(table, pk, "c", bump)
    assert result == 11
    assert (table.get(pk, "c") or {}).get("n") == 11 and etag == (table.get(pk, "c") or Row.of("", "", {}, "")).etag
    assert read_modify_write(table, pk, "missing", lambda row: (None, row)) == (None, None)


def test_read_modify_write_gives_up_with_contended(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    table.write(Insert(pk, "c", {"n": 0}))

    def always_raced(row: Row | None) -> tuple[Merge, None]:
        assert row is not None
        table.write(Merge(pk, "c", {"n": row["n"] + 1}, None))
        return merge(row, {"n": -1}), None

    with pytest.raises(Contended):
        read_modify_write(table, pk, "c", always_raced, attempts=3)
    assert (table.get(pk, "c") or {}).get("n") == 3


def test_concurrent_increments_lose_nothing(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    table.write(Insert(pk, "c", {"n": 0}))

    def add_five() -> None:
        for _ in range(5):
            read_modify_write(table, pk, "c", lambda row: (merge(row, {"n": row["n"] + 1}), None), attempts=100)

    threads = [threading.Thread(target=add_five) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (table.get(pk, "c") or {}).get("n") == 20


def test_a_queue_keeps_a_received_message_hidden_until_deleted(port: Storage) -> None:
    name = f"port-{uuid.uuid4().hex[:12]}"
    with pytest.raises(Missing):
        port.queues.send(name, "lost")
    port.queues.send(name, "first", create=True)
    port.queues.send(name, "second")
    assert port.queues.depth(name) == 2
    got = port.queues.receive(name, count=1, visibility_timeout=60)
    assert [m.content for m in got] == ["first"] and got[0].dequeue_count == 1
    assert [m.content for m in port.queues.receive(name, count=5, visibility_timeout=60)] == ["second"]
    assert port.queues.receive(name) == []
    port.queues.delete(name, got[0])
    assert port.queues.depth(name) == 1
    hidden = port.queues.receive(name)
    assert hidden == []
    port.queues.send(name, "third")
    third = port.queues.receive(name, count=1, visibility_timeout=60)
    port.queues.release(name, third[0])
    assert [m.content for m in port.queues.receive(name, visibility_timeout=60)] == ["third"]
    assert port.queues.depth(name) == 2
    port.queues.drop(name)
    port.queues.drop(name)
    assert port.queues.depth(name) == 0


def test_blobs_list_by_prefix_with_metadata_and_read_ranges(port: Storage) -> None:
    container = f"port-{uuid.uuid4().hex[:12]}"
    with pytest.raises(Missing):
        port.blobs.write(container, "a", b"x")
    port.blobs.ensure(container)
    port.blobs.write(container, "p/a", b"hello world", metadata={"assignments": "a1,a2"})
    port.blobs.write(container, "p/b", b"")
    port.blobs.write(container, "q/c", b"c")
    listed = list(port.blobs.list(container, "p/", metadata=True))
    assert [(b.name, b.size, dict(b.metadata)) for b in listed] == [
        ("p/a", 11, {"assignments": "a1,a2"}), ("p/b", 0, {})]
    assert listed[0].last_modified.tzinfo is not None
    assert port.blobs.read(container, "p/a", 6) == b"world"
    assert port.blobs.read(container, "p/a", 0, 5) == b"hello"
    assert port.blobs.size(container, "p/a") == 11 and port.blobs.size(container, "p/zz") is None
    with pytest.raises(Missing):
        port.blobs.read(container, "p/zz")
    port.blobs.delete(container, "p/a")
    port.blobs.delete(container, "p/a")
    assert [b.name for b in port.blobs.list(container)] == ["p/b", "q/c"]


def test_a_null_field_is_not_stored(port: Storage) -> None:
    table, pk = port.table(storage.T_SCHED), _pk()
    table.write(Upsert(pk, "a", {"x": 1, "y": None}))
    assert dict(table.get(pk, "a") or {}) == {"PartitionKey": pk, "RowKey": "a", "x": 1}
