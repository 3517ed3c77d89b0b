"""The storage adapters built on the port behave alike over Azurite and in memory: resource documents
(ETags, If-Match, pages and their `$skiptoken`s), the scheduling partition, operations and node tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters import join_tokens, node_tokens, operation_store, resource_store, sched_store, storage
from shared.adapters.resource_store import ResourceStore, StaleEtag, decode_token, encode_token
from shared.ports import rows
from shared.ports.contract import BadToken

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _pk() -> str:
    return uuid.uuid4().hex


def test_the_store_s_stale_etag_is_the_port_s() -> None:
    assert resource_store.StaleEtag is rows.StaleEtag


def test_documents_keep_their_etags_and_columns(port_conn: str) -> None:
    store, pk = ResourceStore(port_conn, storage.T_JOBS), _pk()
    doc = store.insert(pk, "a", {"name": "a", "internal": {"phase": "queued"}})
    with pytest.raises(StaleEtag):
        store.insert(pk, "a", {})
    assert store.get(pk, "a") == doc and store.get(pk, "missing") is None
    assert pk in {d.pk for d in store.query("phase", "queued")}
    moved = store.replace(doc, {"name": "a", "internal": {"phase": "running"}})
    assert moved.etag != doc.etag
    with pytest.raises(StaleEtag):
        store.replace(doc, {"name": "stale"})
    assert pk not in {d.pk for d in store.query("phase", "queued")}
    with pytest.raises(StaleEtag):
        store.delete(pk, "a", doc.etag)
    store.delete(pk, "a", moved.etag)
    store.delete(pk, "a")  # gone: no error
    assert store.get(pk, "a") is None


def test_a_large_document_is_chunked(port_conn: str) -> None:
    store, pk = ResourceStore(port_conn, storage.T_JOBS), _pk()
    data = {"text": "x" * (resource_store.CHUNK * 2 + 5)}
    store.insert(pk, "big", data)
    got = store.get(pk, "big")
    assert got is not None and got.data == data


def test_update_retries_a_conflict_but_not_a_client_s_if_match(port_conn: str) -> None:
    store, pk = ResourceStore(port_conn, storage.T_JOBS), _pk()
    first = store.insert(pk, "a", {"n": 0})
    assert store.update(pk, "missing", lambda d: None) is None
    raced = []

    def bump(data: dict[str, int]) -> None:
        if not raced:  # someone else writes between this read and its write: the update re-reads
            raced.append(store.update(pk, "a", lambda d: d.update(n=d["n"] + 10)))
        data["n"] += 1

    done = store.update(pk, "a", bump)
    assert done is not None and done.data == {"n": 11} and store.get(pk, "a") == done
    with pytest.raises(StaleEtag):
        store.update(pk, "a", lambda d: d.update(n=99), expect_etag=first.etag)
    assert store.update(pk, "a", lambda d: d.update(n=12), expect_etag=done.etag) is not None
    assert store.update(pk, "a", lambda d: d.update(n=13), expect_etag="*") is not None

    def always_raced(data: dict[str, int]) -> None:
        store.table.write(rows.Upsert(pk, "a", {"doc0": '{"n":0}'}))

    with pytest.raises(StaleEtag):  # the attempt budget ran out
        store.update(pk, "a", always_raced, attempts=3)


def test_pages_and_their_tokens_round_trip(port_conn: str) -> None:
    store, pk = ResourceStore(port_conn, storage.T_JOBS), _pk()
    for i in range(5):
        store.insert(pk, f"d{i}", {"i": i})
    seen, token = [], None
    while True:
        docs, nxt = store.page(pk, 2, token)
        seen += [d.data["i"] for d in docs]
        text = encode_token(nxt)
        if text is None:
            break
        token = decode_token(text)
    assert seen == [0, 1, 2, 3, 4]
    docs, nxt = store.page_prefix(pk[:-1], 10)
    assert [d.rk for d in docs if d.pk == pk] == [f"d{i}" for i in range(5)]
    assert sorted(d.data["i"] for d in store.scan(pk=pk)) == [0, 1, 2, 3, 4]


def test_a_table_refuses_a_token_it_did_not_give(port_conn: str) -> None:
    """An invented `$skiptoken` that decodes (the other storage's kind, say) is refused, never a server error."""
    store, pk = ResourceStore(port_conn, storage.T_JOBS), _pk()
    for i in range(3):
        store.insert(pk, f"d{i}", {"i": i})
    _, own = store.page(pk, 1)
    other_kind = 7 if isinstance(own, dict) else {"PartitionKey": pk, "RowKey": "d1"}
    for bad in (other_kind, "x", True, -1, [1], {"a": "b"}, {}):
        with pytest.raises(BadToken):
            store.page(pk, 1, bad)
    docs, _ = store.page(pk, 1, own)
    assert [d.rk for d in docs] == ["d1"]


def test_both_kinds_of_token_decode_and_others_do_not() -> None:
    sdk = {"PartitionKey": "p", "RowKey": "r"}
    assert decode_token(encode_token(sdk) or "") == sdk
    assert decode_token(encode_token(7) or "") == 7
    assert encode_token(None) is None and encode_token({}) is None
    for bad in ("", "!!!", encode_token([1]), encode_token({"a": 1}), encode_token(True), encode_token(-1)):
        with pytest.raises(ValueError):
            decode_token(bad or "")


def test_the_scheduling_partition_pages_the_pending_index(port_conn: str) -> None:
    key = _pk()
    for i in range(5):
        sched_store.add_pending(port_conn, key, f"job{i}", "normal", T0 + timedelta(seconds=i), 1)
    sched_store.add_pending(port_conn, key, "urgent", "high", T0 + timedelta(hours=1), 2)
    pages = list(sched_store.pending_pages(port_conn, key, 4))
    assert [[r["jobKey"] for r in p] for p in pages] == [["urgent", "job0", "job1", "job2"], ["job3", "job4"]]
    assert sched_store.rows_before_pending(port_conn, key) == []
    [row] = [r for r in sched_store.partition(port_conn, key) if r["jobKey"] == "urgent"]
    assert row["nodeCount"] == 2
    assert list(sched_store.pending_pages(port_conn, _pk(), 4)) == [[]]


def test_an_operation_is_finished_once(port_conn: str) -> None:
    op_id = _pk()
    operation_store.create(port_conn, op_id, "delete-job", {"job": "k"}, "t0", "a$b")
    assert op_id in {i for i, _ in operation_store.in_flight(port_conn)}
    op = operation_store.get(port_conn, op_id)
    assert op is not None and (op.status, op.target, op.resource_id) == ("InProgress", {"job": "k"}, "a$b")
    operation_store.finish(port_conn, op, "Failed", "t1", {"code": "X"})
    with pytest.raises(StaleEtag):
        operation_store.finish(port_conn, op, "Succeeded", "t2")
    done = operation_store.get(port_conn, op_id)
    assert done is not None and (done.status, done.error, done.finished_at) == ("Failed", {"code": "X"}, "t1")
    operation_store.forget(port_conn, op_id)
    operation_store.forget(port_conn, op_id)
    assert op_id not in {i for i, _ in operation_store.in_flight(port_conn)}
    assert operation_store.get(port_conn, _pk()) is None


def test_tokens_are_stored_hashed_and_retired(port_conn: str) -> None:
    key = _pk()
    join = join_tokens.mint(key, "jt-1")
    join_tokens.store(port_conn, key, "jt-1", join, T0 + timedelta(hours=1), T0)
    with pytest.raises(StaleEtag):
        join_tokens.store(port_conn, key, "jt-1", join, T0 + timedelta(hours=1), T0)
    assert isinstance(join_tokens.check(port_conn, join, T0), join_tokens.JoinToken)
    assert join_tokens.check(port_conn, join + "x", T0) == "the join token is unknown or was revoked"
    assert [t.name for t in join_tokens.list_tokens(port_conn, key)] == ["jt-1"]
    token = node_tokens.mint()
    node_tokens.store(port_conn, key, "n1", token, join_token="jt-1")
    assert node_tokens.matches(port_conn, key, "n1", token) and not node_tokens.matches(port_conn, key, "n1", "x")
    node_tokens.retire(port_conn, key, "n1")
    node_tokens.retire(port_conn, key, "none")
    [joined] = node_tokens.joined(port_conn, key)
    assert joined["RowKey"] == "n1" and joined["retiredAt"]
    assert join_tokens.revoke(port_conn, key, "jt-1") and not join_tokens.revoke(port_conn, key, "jt-1")
    assert join_tokens.valid(port_conn, key, "jt-1", T0) == "join token 'jt-1' was revoked"
    node_tokens.revoke(port_conn, key, "n1")
    node_tokens.revoke(port_conn, key, "n1")
    assert node_tokens.joined(port_conn, key) == []
