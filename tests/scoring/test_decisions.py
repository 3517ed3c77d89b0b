"""Table tests of the pure scoring decisions and the manifest model."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.decisions import scoring as decide
from shared.domain import scoring as sc
from shared.domain.keys import WorkspaceRef
from shared.domain.scoring import ItemResult, Threshold


@pytest.mark.parametrize("count, per_job, sizes", [
    (120, 50, [50, 50, 20]), (100, 50, [50, 50]), (1, 50, [1]), (0, 50, []), (7, 1, [1] * 7), (5, 10, [5]),
])
def test_chunking(count: int, per_job: int, sizes: list[int]) -> None:
    items = [f"i{n}" for n in range(count)]
    chunks = decide.chunk_items(items, per_job)
    assert [len(c) for c in chunks] == sizes
    assert [i for c in chunks for i in c] == items


def _chunk(todo: list[str], attempt: int = 1) -> dict:
    return {"index": 0, "items": ["a", "b", "c"], "todo": todo, "attempt": attempt, "submitted": True,
            "done": False, "succeeded": {}, "failed": {}, "jobsFailed": 0}


OK, BAD = ItemResult("succeeded", ("a.out",)), ItemResult("failed", (), "boom")


@pytest.mark.parametrize("case, end, max_retries, expect", [
    ("all reported ok", decide.AttemptEnd(True, None, {"a": OK, "b": OK, "c": OK}), 1,
     {"done": True, "succeeded": {"a", "b", "c"}, "failed": {}, "todo": [], "attempt": 1}),
    ("no results, job ok: all ok", decide.AttemptEnd(True, None, None), 1,
     {"done": True, "succeeded": {"a", "b", "c"}, "failed": {}, "todo": [], "attempt": 1}),
    ("one failed: retried alone", decide.AttemptEnd(False, "exit 1", {"a": OK, "b": BAD, "c": OK}), 1,
     {"done": False, "succeeded": {"a", "c"}, "failed": {}, "todo": ["b"], "attempt": 2}),
    ("one failed, no retries left", decide.AttemptEnd(False, "exit 1", {"a": OK, "b": BAD, "c": OK}), 0,
     {"done": True, "succeeded": {"a", "c"}, "failed": {"b": "boom"}, "todo": [], "attempt": 1}),
    ("job failed, no results: all retried", decide.AttemptEnd(False, "exit 2", None), 1,
     {"done": False, "succeeded": set(), "failed": {}, "todo": ["a", "b", "c"], "attempt": 2}),
    ("job failed, no results, no retries", decide.AttemptEnd(False, "exit 2", None), 0,
     {"done": True, "succeeded": set(), "failed": {"a": "exit 2", "b": "exit 2", "c": "exit 2"}, "todo": [],
      "attempt": 1}),
    ("job ok but an item unreported", decide.AttemptEnd(True, None, {"a": OK, "b": OK}), 0,
     {"done": True, "succeeded": {"a", "b"}, "failed": {"c": "the job did not report this item"}, "todo": [],
      "attempt": 1}),
])
def test_settle_attempt(case: str, end: decide.AttemptEnd, max_retries: int, expect: dict) -> None:
    out = decide.settle_attempt(_chunk(["a", "b", "c"]), end, max_retries)
    assert out["done"] is expect["done"], case
    assert set(out["succeeded"]) == expect["succeeded"], case
    assert out["failed"] == expect["failed"], case
    assert out["todo"] == expect["todo"], case
    assert out["attempt"] == expect["attempt"], case
    assert out["submitted"] is (expect["done"] or expect["attempt"] == 1)  # a retry is submitted afresh


def test_retries_are_bounded() -> None:
    chunk = _chunk(["a", "b", "c"])
    attempts = 0
    while not chunk["done"]:
        attempts += 1
        chunk = decide.settle_attempt(chunk, decide.AttemptEnd(False, "exit 1", {"a": OK, "b": BAD, "c": OK}), 2)
        assert attempts <= 3
    assert attempts == 3 and chunk["failed"] == {"b": "boom"} and chunk["jobsFailed"] == 3


def _settled(succeeded: int, failed: int) -> dict:
    items = [f"i{n}" for n in range(succeeded + failed)]
    return {"index": 0, "items": items, "todo": [], "attempt": 1, "submitted": True, "done": True,
            "succeeded": {i: [] for i in items[:succeeded]}, "failed": {i: "x" for i in items[succeeded:]},
            "jobsFailed": 0}


@pytest.mark.parametrize("chunks, threshold, kind", [
    ([_settled(10, 0)], Threshold(0, 100), "scored"),
    ([_settled(19, 1)], Threshold(5, 100), "scored"),  # exactly 5%: not more than the threshold
    ([_settled(19, 1)], Threshold(4.9, 100), "fail"),
    ([_settled(19, 1)], Threshold(0, 100), "fail"),
    ([_settled(10, 0), _settled(9, 1)], Threshold(10, 49), "fail"),  # 1 of 2 jobs: more than 49%
    ([_settled(10, 0), _settled(9, 1)], Threshold(10, 50), "scored"),
    ([_settled(10, 0), {**_settled(5, 0), "done": False}], Threshold(0, 100), "continue"),
])
def test_threshold_verdicts(chunks: list[dict], threshold: Threshold, kind: str) -> None:
    assert decide.scoring_verdict(chunks, threshold).kind == kind


def test_progress_and_summary() -> None:
    chunks = [_settled(2, 1), {**decide.new_chunks(["x", "y"], 5)[0], "index": 1, "submitted": True}]
    p = decide.progress(chunks, running_jobs=1)
    assert p["items"] == {"total": 5, "succeeded": 2, "failed": 1, "pending": 2}
    assert p["jobs"] == {"total": 2, "succeeded": 0, "failed": 1, "running": 1, "retries": 0}
    rows = decide.summary(chunks)
    assert [(r["name"], r["status"]) for r in rows] == [("i0", "succeeded"), ("i1", "succeeded"), ("i2", "failed"),
                                                        ("x", "pending"), ("y", "pending")]


def test_run_ids_follow_blob_name_and_version() -> None:
    a = sc.run_id("ws/frames.json", '"0x1"')
    assert a == sc.run_id("ws/frames.json", "0x1")  # quoted or not, one version is one run
    assert a != sc.run_id("ws/frames.json", "0x2") and a != sc.run_id("ws/other.json", "0x1")
    assert a.startswith("frames-") and len(sc.chunk_job_name(a + "x" * 40, 999, 5)) <= 64 + 40
    assert len(sc.chunk_job_name(sc.run_id("ws/" + "n" * 200 + ".json", "e"), 9999, 6)) <= 64


def test_run_transitions() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert sc.run_transition("preparing", "scoring", "x", now)["to"] == "scoring"
    with pytest.raises(sc.IllegalTransition):
        sc.run_transition("succeeded", "scoring", "x", now)


def _manifest(**over: object) -> bytes:
    base = {"cluster": "c", "experiment": "e", "input": {"container": "inp", "prefix": "p"},
            "output": {"container": "out"},
            "jobTemplate": {"properties": {"stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
                                           "customToolkitSettings": {"commandLine": "true"}}}}
    base.update(over)
    return json.dumps(base).encode()


SUB = "5f1c0a2e-3b4d-4c6e-8f90-a1b2c3d4e5f6"
PATH = sc.ManifestPath.parse(f"{SUB}/rg/ws/m.json")


def test_manifest_paths_name_the_workspace() -> None:
    assert PATH.workspace_ref == WorkspaceRef(SUB, "rg", "ws") and PATH.name == "m"
    assert sc.ManifestPath.parse(f"{SUB}/rg/ws/dir/m.json").name == "dir/m"
    for bad in ("ws/m.json", f"{SUB}/rg/m.json", "not-a-guid/rg/ws/m.json", f"{SUB}/../ws/m.json",
                f"{SUB}/rg/ws\n/m.json", f"{SUB}/rg/\u212aws/m.json", f"{SUB}/rg/ws/"):
        with pytest.raises(sc.ManifestPathError):
            sc.ManifestPath.parse(bad)


def test_manifest_defaults_and_template_wiring() -> None:
    m = sc.parse_manifest(_manifest(), PATH, "acct", "key")
    assert (m.workspace.subscription, m.workspace.resource_group, m.workspace.workspace) == (SUB, "rg", "ws")
    assert m.items_per_job == 50 and m.input_prefix == "p/" and m.output_prefix == ""
    assert m.threshold == Threshold(0.0, 100.0) and m.max_retries == 1 and m.final_job is None
    props = sc.job_properties(m, m.job_template, "bsr-x-0000-1", "acct", "key")
    assert props["inputDirectories"] == [{"id": "ITEMS", "path": sc.ITEMS_PATH}]
    assert props["mountVolumes"]["azureBlobFileSystems"][0]["containerName"] == "bsr-x-0000-1"
    assert props["cluster"]["id"].endswith("/workspaces/ws/clusters/c")
    assert sc.Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


@pytest.mark.parametrize("raw, reason", [
    (b"{", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (_manifest(workspace="other"), f"sits under '{SUB}/rg/ws/'"),
    (_manifest(resourceGroup="other"), "names resourceGroup 'other'"),
    (_manifest(subscriptionId="00000000-0000-0000-0000-000000000000"), "names subscriptionId"),
    (_manifest(padding="x" * sc.MAX_MANIFEST_BYTES), "the limit is"),
    (_manifest(cluster=""), "'cluster' is required"),
    (_manifest(itemsPerJob=0), "'itemsPerJob' must be an integer"),
    (_manifest(errorThreshold={"failedItemsPercent": 150}), "failedItemsPercent"),
    (_manifest(input={"container": "Bad_Name"}), "not a valid blob container name"),
    (_manifest(jobTemplate={"properties": {"stdOutErrPathPrefix": "x"}}), "'jobTemplate' is not a valid job"),
    (_manifest(jobTemplate={"properties": {"stdOutErrPathPrefix": "x", "customToolkitSettings": {},
                                           "inputDirectories": [{"id": "ITEMS", "path": "/x"}]}}), "ITEMS"),
])
def test_bad_manifests_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(sc.ManifestError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        sc.parse_manifest(raw, PATH, "acct", "key")


def test_results_file_parsing() -> None:
    raw = json.dumps({"items": [{"name": "a", "status": "succeeded", "outputs": ["x/a.out", "../evil"]},
                                {"name": "b", "status": "weird"}, {"nope": 1}]}).encode()
    results = sc.parse_results(raw)
    assert results == {"a": ItemResult("succeeded", ("x/a.out",)),
                       "b": ItemResult("failed", (), "reported status 'weird'")}
    assert sc.parse_results(b"garbage") is None and sc.parse_results(None) is None
