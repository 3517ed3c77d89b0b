"""Concurrent read-then-write of one entity: ETag conflicts are explicit (412) or retried correctly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore, StaleEtag
from tests.api.conftest import API, unique


def scratch_store(conn: str) -> ResourceStore:
    """A table of its own: documents that are not workspaces stay out of the service's tables."""
    name = unique("concurrency").replace("-", "")
    storage.table_service(conn).create_table_if_not_exists(name)
    return ResourceStore(conn, name)


def test_stale_replace_is_refused(storage_conn: str) -> None:
    store = scratch_store(storage_conn)
    pk, rk = "concurrency", unique("doc")
    store.insert(pk, rk, {"n": 0})
    a, b = store.get(pk, rk), store.get(pk, rk)
    store.replace(a, {"n": 1})
    with pytest.raises(StaleEtag):
        store.replace(b, {"n": 2})  # b was read before a's write: refused, not lost
    assert store.get(pk, rk).data == {"n": 1}


def test_concurrent_updates_are_retried_and_all_land(storage_conn: str) -> None:
    store = scratch_store(storage_conn)
    pk, rk = "concurrency", unique("doc")
    store.insert(pk, rk, {"seen": []})
    barrier = threading.Barrier(8)

    def add(i: int) -> None:
        barrier.wait()
        store.update(pk, rk, lambda d: d["seen"].append(i))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(8)))
    assert sorted(store.get(pk, rk).data["seen"]) == list(range(8))


def test_two_patches_with_one_etag(http: httpx.Client, ws_path: Callable[[str], str]) -> None:
    base = ws_path(unique("ws"))
    assert http.put(f"{base}?{API}", json={"location": "eastus"}).status_code == 200
    etag = http.get(f"{base}?{API}").headers["ETag"]
    barrier = threading.Barrier(2)

    def patch(i: int) -> int:
        barrier.wait()
        return http.patch(f"{base}?{API}", json={"tags": {"writer": str(i)}}, headers={"If-Match": etag}).status_code

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(patch, range(2)))
    assert codes == [200, 412]
    assert http.delete(f"{base}?{API}").status_code == 202
