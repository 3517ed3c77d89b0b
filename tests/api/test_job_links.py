"""Job arrays and dependencies through the API, against real Azurite: validation, what is stored and
echoed, which jobs enter the pending index, how ends move parents and dependents, the cascades of
terminate and delete, and the safety timer's repair of an end whose handling was lost. Children and
dependencies are moved with the scheduler's own `job_state`, as task events would move them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.adapters import sched_store
from shared.config import Settings
from shared.domain.keys import JobRef, WorkspaceRef
from shared.services import job_links, job_state, safety_pass
from tests.api.conftest import API, unique, wait_until

CLUSTER = {"properties": {"vmSize": "STANDARD_D1", "userAccountSettings": {"adminUserName": "u"},
                          "scaleSettings": {"manual": {"targetNodeCount": 1}}}}


@pytest.fixture()
def ws(http: httpx.Client, api_endpoint: dict[str, str]) -> Iterator[WorkspaceRef]:
    ref = WorkspaceRef(api_endpoint["subscription_id"], api_endpoint["resource_group"], unique("links"))
    assert http.put(f"{ref.arm_id}?{API}", json={"location": "eastus"}).status_code == 200
    assert http.put(f"{ref.arm_id}/clusters/c?{API}", json=CLUSTER).status_code == 200
    assert http.put(f"{ref.arm_id}/experiments/e?{API}", json={}).status_code == 200
    yield ref


def body(ws: WorkspaceRef, **extra: Any) -> dict[str, Any]:
    return {"properties": {"cluster": {"id": f"{ws.arm_id}/clusters/c"}, "stdOutErrPathPrefix": "/tmp/out",
                           "customToolkitSettings": {"commandLine": "echo $AZ_BATCHAI_ARRAY_INDEX"}, **extra}}


def put(http: httpx.Client, ws: WorkspaceRef, name: str, **extra: Any) -> dict[str, Any]:
    r = http.put(f"{ws.arm_id}/experiments/e/jobs/{name}?{API}", json=body(ws, **extra))
    assert r.status_code == 200, r.text
    return r.json()


def get(http: httpx.Client, ws: WorkspaceRef, name: str) -> dict[str, Any] | None:
    r = http.get(f"{ws.arm_id}/experiments/e/jobs/{name}?{API}")
    return None if r.status_code == 404 else r.json()


def pending(ws: WorkspaceRef) -> set[str]:
    rows = sched_store.partition(Settings.from_env().storage_connection_string, ws.cluster("c").key)
    return {r["jobKey"].rsplit("|", 1)[-1] for r in rows if r["RowKey"].startswith(sched_store.PENDING)}


def end(ref: JobRef, phase: str = "succeeded") -> None:
    """The job runs and ends, as a scheduling pass and its task events would make it."""
    settings, now = Settings.from_env(), datetime.now(UTC)
    job_state.transition(settings, ref, "assigned", "test: assigned", now)
    job_state.transition(settings, ref, "running", "test: started", now)
    job_state.transition(settings, ref, phase, "test: ended", now)


def internal(ref: JobRef) -> dict[str, Any]:
    doc = job_state.get(Settings.from_env(), ref)
    assert doc is not None
    return doc.data["internal"]


def codes(job: dict[str, Any]) -> list[str]:
    return [e["code"] for e in (job["properties"].get("executionInfo") or {}).get("errors") or []]


@pytest.mark.parametrize(("extra", "target"), [
    ({"array": {"count": 0}}, "properties.array.count"),
    ({"array": {"count": 3, "maxConcurrent": 4}}, "properties.array.maxConcurrent"),
    ({"dependsOn": [{"job": "nope"}]}, "properties.dependsOn[0].job"),
    ({"dependsOn": [{"job": "x", "condition": "maybe"}]}, "properties.dependsOn[0].condition"),
])
def test_refusals_are_400_with_the_field_as_target(http: httpx.Client, ws: WorkspaceRef, extra: dict[str, Any],
                                                   target: str) -> None:
    r = http.put(f"{ws.arm_id}/experiments/e/jobs/x?{API}", json=body(ws, **extra))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["target"] == target
    assert get(http, ws, "x") is None


def test_an_array_writes_k_children_and_advances_as_they_end(http: httpx.Client, ws: WorkspaceRef) -> None:
    parent = put(http, ws, "arr", array={"count": 5, "maxConcurrent": 2})
    assert parent["properties"]["array"] == {"count": 5, "maxConcurrent": 2}
    assert parent["properties"]["executionState"] == "queued"
    assert pending(ws) == {"arr-0", "arr-1"}  # the parent itself is never pending
    child = get(http, ws, "arr-1")
    assert child["properties"]["arrayIndex"] == 1 and child["properties"]["arrayCount"] == 5
    assert "array" not in child["properties"] and get(http, ws, "arr-2") is None
    assert put(http, ws, "arr", array={"count": 5, "maxConcurrent": 2})["name"] == "arr"  # a retried PUT matches
    assert get(http, ws, "arr-2") is None

    exp = ws.experiment("e")
    end(exp.job("arr-0"))
    assert get(http, ws, "arr")["properties"]["executionState"] == "running"
    assert get(http, ws, "arr-2") is not None and get(http, ws, "arr-3") is None
    end(exp.job("arr-1"), "failed")
    for i in (2, 3, 4):
        end(exp.job(f"arr-{i}"))
    job = get(http, ws, "arr")
    assert job["properties"]["executionState"] == "failed"
    assert codes(job) == ["ArrayTaskFailed"]
    error = job["properties"]["executionInfo"]["errors"][0]
    assert error["details"] == [{"name": "failedIndices", "value": "1"}]
    assert [h["to"] for h in internal(exp.job("arr"))["history"]] == ["running", "failed"]
    assert get(http, ws, "arr-5") is None


def test_an_array_whose_children_all_succeed_succeeds(http: httpx.Client, ws: WorkspaceRef) -> None:
    put(http, ws, "ok", array={"count": 2})
    end(ws.experiment("e").job("ok-0"))
    end(ws.experiment("e").job("ok-1"))
    job = get(http, ws, "ok")
    assert job["properties"]["executionState"] == "succeeded" and codes(job) == []


def test_a_dependent_waits_out_of_the_index_then_runs(http: httpx.Client, ws: WorkspaceRef) -> None:
    put(http, ws, "first")
    job = put(http, ws, "second", dependsOn=[{"job": "first"}])
    assert job["properties"]["dependsOn"] == [{"job": "first", "condition": "succeeded"}]
    assert job["properties"]["executionState"] == "queued"
    assert job["properties"]["waitingReason"] == "WaitingForDependencies"
    assert pending(ws) == {"first"}
    safety_pass.safety_pass(Settings.from_env(), datetime.now(UTC))  # the repair never indexes a waiting job
    assert "second" not in pending(ws)

    end(ws.experiment("e").job("first"))
    job = get(http, ws, "second")
    assert job["properties"]["executionState"] == "queued" and "waitingReason" not in job["properties"]
    assert "second" in pending(ws)


def test_a_failed_dependency_fails_its_dependents_down_the_chain(http: httpx.Client, ws: WorkspaceRef) -> None:
    put(http, ws, "prep")
    put(http, ws, "train", dependsOn=[{"job": "prep"}])
    put(http, ws, "report", dependsOn=[{"job": "train", "condition": "succeeded"}])
    put(http, ws, "cleanup", dependsOn=[{"job": f"{ws.arm_id}/experiments/e/jobs/prep", "condition": "ended"}])
    end(ws.experiment("e").job("prep"), "failed")
    train = get(http, ws, "train")
    assert train["properties"]["executionState"] == "failed"
    assert codes(train) == ["DependencyFailed"]
    assert "'prep'" in train["properties"]["executionInfo"]["errors"][0]["message"]
    report = get(http, ws, "report")
    assert report["properties"]["executionState"] == "failed" and codes(report) == ["DependencyFailed"]
    assert "'train'" in report["properties"]["executionInfo"]["errors"][0]["message"]
    assert "cleanup" in pending(ws)  # after any end
    # A dependency that already failed: the new job ends at once.
    late = put(http, ws, "late", dependsOn=[{"job": "prep"}])
    assert late["properties"]["executionState"] == "failed" and codes(late) == ["DependencyFailed"]


def test_terminating_an_array_stops_its_children_and_writes_no_more(http: httpx.Client, ws: WorkspaceRef) -> None:
    put(http, ws, "stop", array={"count": 6, "maxConcurrent": 2})
    settings, now, exp = Settings.from_env(), datetime.now(UTC), ws.experiment("e")
    job_state.transition(settings, exp.job("stop-0"), "assigned", "test", now)
    job_state.transition(settings, exp.job("stop-0"), "running", "test", now)
    r = http.post(f"{ws.arm_id}/experiments/e/jobs/stop/terminate?{API}")
    assert r.status_code == 202
    assert get(http, ws, "stop-1")["properties"]["executionState"] == "failed"  # it was queued
    assert get(http, ws, "stop-0")["properties"]["executionState"] == "terminating"
    assert get(http, ws, "stop")["properties"]["executionState"] == "terminating"
    job_state.transition(settings, exp.job("stop-0"), "failed", "test: tasks stopped", now)
    job = get(http, ws, "stop")
    assert job["properties"]["executionState"] == "failed"
    assert codes(job) == ["JobTerminated", "ArrayTaskFailed"]
    assert get(http, ws, "stop-2") is None
    assert exp.job("stop").key not in job_links.reconcile_all(settings, datetime.now(UTC)).arrays  # not live


def test_deleting_an_array_deletes_its_children(http: httpx.Client, ws: WorkspaceRef) -> None:
    put(http, ws, "gone", array={"count": 4, "maxConcurrent": 3})
    assert http.delete(f"{ws.arm_id}/experiments/e/jobs/gone?{API}").status_code == 202
    wait_until(lambda: get(http, ws, "gone") is None, 30, "the array job to be deleted")
    assert [get(http, ws, f"gone-{i}") for i in range(4)] == [None] * 4
    assert pending(ws) == set()


def test_the_safety_timer_moves_what_a_lost_end_left(http: httpx.Client, ws: WorkspaceRef) -> None:
    put(http, ws, "dep")
    put(http, ws, "after", dependsOn=[{"job": "dep"}])
    put(http, ws, "two", array={"count": 2, "maxConcurrent": 1})
    settings, exp = Settings.from_env(), ws.experiment("e")
    for name in ("dep", "two-0"):  # ended, but the handler that would have moved the others died
        store = job_state.jobs(settings)
        doc = store.get(exp.job_pk, name)
        data = copy.deepcopy(doc.data)
        data["internal"]["phase"] = "succeeded"
        store.replace(doc, data)
    assert "after" not in pending(ws) and get(http, ws, "two-1") is None

    tick = job_links.reconcile_all(settings, datetime.now(UTC))
    assert exp.job("after").key in tick.waiting and exp.job("two").key in tick.arrays
    assert "after" in pending(ws) and get(http, ws, "two-1") is not None
    again = job_links.reconcile_all(settings, datetime.now(UTC))  # a doubled tick changes nothing
    assert exp.job("after").key not in again.waiting
    assert get(http, ws, "two")["properties"]["executionState"] == "running"


def test_terminating_a_waiting_job_ends_it_and_its_wait(http: httpx.Client, ws: WorkspaceRef) -> None:
    put(http, ws, "blocker")
    put(http, ws, "waiter", dependsOn=[{"job": "blocker"}])
    assert http.post(f"{ws.arm_id}/experiments/e/jobs/waiter/terminate?{API}").status_code == 200
    job = get(http, ws, "waiter")
    assert job["properties"]["executionState"] == "failed" and codes(job) == ["JobTerminated"]
    end(ws.experiment("e").job("blocker"))
    assert "waiter" not in pending(ws)
    tick = job_links.reconcile_all(Settings.from_env(), datetime.now(UTC))
    assert ws.experiment("e").job("waiter").key not in tick.waiting


def test_deleting_a_dependency_fails_who_needed_it_to_succeed(http: httpx.Client, ws: WorkspaceRef) -> None:
    put(http, ws, "doomed")
    put(http, ws, "needs", dependsOn=[{"job": "doomed"}])
    put(http, ws, "tidy", dependsOn=[{"job": "doomed", "condition": "ended"}])
    assert http.delete(f"{ws.arm_id}/experiments/e/jobs/doomed?{API}").status_code == 202
    # The deletion timer removes the document, then evaluates who waited on it.
    needs = wait_until(lambda: (j := get(http, ws, "needs"))["properties"]["executionState"] == "failed" and j, 30,
                       "the dependent to end")
    assert get(http, ws, "doomed") is None and codes(needs) == ["DependencyFailed"]
    assert "'doomed' was deleted" in needs["properties"]["executionInfo"]["errors"][0]["message"]
    wait_until(lambda: "tidy" in pending(ws), 30, "the other dependent to be pending")


def test_a_job_released_after_its_cluster_went_fails_with_cluster_deleted(http: httpx.Client,
                                                                         ws: WorkspaceRef) -> None:
    put(http, ws, "early")
    put(http, ws, "late", dependsOn=[{"job": "early", "condition": "ended"}])
    assert http.delete(f"{ws.arm_id}/clusters/c?{API}").status_code == 202
    # The deletion timer fails the jobs pending there ("early"), whose end releases "late".
    late = wait_until(lambda: (j := get(http, ws, "late"))["properties"]["executionState"] == "failed" and j, 30,
                      "the dependent to end")
    assert codes(late) == ["ClusterDeleted"]
    assert get(http, ws, "early")["properties"]["executionState"] == "failed"


def test_the_safety_timer_trigger_runs_the_backstop(http: httpx.Client, ws: WorkspaceRef) -> None:
    from shared.localhost.loader import load_functions

    put(http, ws, "quiet")
    put(http, ws, "behind", dependsOn=[{"job": "quiet"}])
    store, exp = job_state.jobs(Settings.from_env()), ws.experiment("e")
    doc = store.get(exp.job_pk, "quiet")
    data = copy.deepcopy(doc.data)
    data["internal"]["phase"] = "succeeded"  # ended, with no one told
    store.replace(doc, data)
    timer = next(f for f in load_functions() if f.get_function_name() == "scheduling_safety_pass")
    timer.get_user_function()(None)
    assert "behind" in pending(ws)


def test_concurrent_ends_and_ticks_keep_the_bound_and_write_each_child_once(http: httpx.Client,
                                                                           ws: WorkspaceRef) -> None:
    """Children end on several threads at once while timer ticks run beside them: every advance
    races the others for the parent's ETag, and still no more than K children are ever live."""
    from concurrent.futures import ThreadPoolExecutor

    count, bound = 12, 3
    put(http, ws, "race", array={"count": count, "maxConcurrent": bound})
    settings, exp = Settings.from_env(), ws.experiment("e")
    names = [f"race-{i}" for i in range(count)]

    def docs() -> dict[str, Any]:
        store = job_state.jobs(settings)
        return {n: d.data for n in names if (d := store.get(exp.job_pk, n)) is not None}

    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(count + 1):
            live = [n for n, d in docs().items() if d["internal"]["phase"] == "queued"]
            assert len(live) <= bound
            if not live:
                break
            ticks = [pool.submit(job_links.reconcile_all, settings, datetime.now(UTC)) for _ in range(2)]
            for future in [pool.submit(end, exp.job(n)) for n in live] + ticks:
                future.result()
    assert get(http, ws, "race")["properties"]["executionState"] == "succeeded"
    children = docs()
    assert sorted(children) == sorted(names) and get(http, ws, f"race-{count}") is None
    spans = sorted((datetime.fromisoformat(d["internal"]["submittedAt"]),
                    datetime.fromisoformat(d["internal"]["history"][-1]["at"])) for d in children.values())
    events = sorted([(e, -1) for _, e in spans] + [(s, 1) for s, _ in spans])
    live_at = [sum(delta for _, delta in events[:k + 1]) for k in range(len(events))]
    assert max(live_at) == bound
