"""Batch-scoring runs end to end on the local stack: manifest upload -> jobs on 2 local nodes ->
outputs, summary, final job; redelivery; error thresholds; bad manifests through the API."""

from __future__ import annotations

import json
import re

import pytest

from shared.adapters import storage
from shared.domain import scoring as sc
from tests.e2e.conftest import wait_until
from tests.scoring.conftest import EXP, WS, ScoringStack, manifest, template

pytestmark = pytest.mark.slow


def test_120_items_in_3_jobs_with_outputs_summary_and_final_job(scoring_stack: ScoringStack) -> None:
    s = scoring_stack
    items = {f"in/item-{i:03d}.txt": f"item {i}" for i in range(120)}
    s.upload_inputs("inputs-a", items)
    body = manifest("inputs-a", "outputs-a", itemsPerJob=50, finalJob=template("combine.py"))
    run = s.upload_manifest(WS, "first", body)
    done = s.wait_run(WS, run)
    props = done["properties"]
    summary = json.loads(s.read_blob("outputs-a", props["summary"]["blob"]))
    assert props["state"] == "succeeded", (props["stateReason"], [r for r in summary["items"] if "error" in r][:1])
    assert props["progress"]["jobs"]["total"] == 3
    assert props["progress"]["items"] == {"total": 120, "succeeded": 120, "failed": 0, "pending": 0}
    jobs = {j.name: j for j in s.client.jobs.list_by_experiment(s.rg, WS, EXP) if j.name.startswith(run)}
    assert sorted(jobs) == sorted([sc.chunk_job_name(run, i, 1) for i in range(3)] + [sc.final_job_name(run)])
    assert all(j.execution_state == "succeeded" for j in jobs.values())
    outputs = s.names("outputs-a", "out/scored/")
    assert len(outputs) == 120
    assert s.read_blob("outputs-a", "out/scored/item-007.txt.out") == b"ITEM 7"
    assert summary["state"] == "succeeded"
    assert [r["name"] for r in summary["items"]] == sorted(items)
    assert summary["items"][7] == {"name": "in/item-007.txt", "status": "succeeded", "chunk": 0,
                                   "outputs": ["out/scored/item-007.txt.out"]}
    combined = s.read_blob("outputs-a", "out/combined.txt").decode().split("\n")
    assert combined == [f"ITEM {i}" for i in range(120)]
    assert props["finalJob"]["state"] == "succeeded"
    # The work containers of a run that succeeded are removed.
    assert not [c.name for c in s.blobs.list_containers(name_starts_with=f"bsr-{sc.run_hash(run)}")]



def test_the_same_blob_version_again_starts_no_new_run(scoring_stack: ScoringStack,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The blob trigger delivered twice for one version (called here directly, as a redelivery
    would) finds the run it started; a new version of the manifest starts a new run."""
    from functions import triggers

    s = scoring_stack
    monkeypatch.setenv("BATCHAI_STORAGE_CONNECTION_STRING", s.endpoint["storage_connection_string"])
    s.upload_inputs("inputs-r", {f"in/r-{i}.txt": f"r {i}" for i in range(3)})
    run = s.upload_manifest(WS, "redelivered", manifest("inputs-r", "outputs-r", itemsPerJob=2))
    first = s.wait_run(WS, run)["properties"]
    assert first["state"] == "succeeded"
    blob = s.blobs.get_blob_client(storage.C_TRIGGERS, s.manifest_blob(WS, "redelivered"))
    triggers.scoring_manifest(_input_stream(blob))
    triggers.scoring_manifest(_input_stream(blob))
    runs = [r["name"] for r in s.api(f"{s.ws_path(WS)}/batchScoringRuns").json()["value"]
            if r["name"].startswith("redelivered-")]
    assert runs == [run]
    assert s.run(WS, run)["properties"]["endTime"] == first["endTime"]
    jobs = [j.name for j in s.client.jobs.list_by_experiment(s.rg, WS, EXP) if j.name.startswith(run)]
    assert sorted(jobs) == [sc.chunk_job_name(run, 0, 1), sc.chunk_job_name(run, 1, 1)]
    second = s.upload_manifest(WS, "redelivered", manifest("inputs-r", "outputs-r", itemsPerJob=2))
    assert second != run
    assert s.wait_run(WS, second)["properties"]["state"] == "succeeded"


def _input_stream(blob) -> object:
    import azure.functions as func

    props = blob.get_blob_properties()
    return func.blob.InputStream(data=blob.download_blob().readall(), name=f"{storage.C_TRIGGERS}/{blob.blob_name}",
                                 uri=blob.url, length=props.size, blob_properties={"ETag": props.etag},
                                 metadata=dict(props.metadata))


def test_a_run_whose_end_outlived_its_step_is_finished_by_the_next(scoring_stack: ScoringStack,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The work containers of a run that succeeded go only after the save that ends it, and the run
    leaves the active index only after that. A host that died in between (index row and a work
    container left; the summary lost, or overwritten by a step that lost the save) has the end
    finished by the next step: the summary as saved, no work containers, no index row."""
    from datetime import UTC, datetime

    from shared.config import Settings
    from shared.domain.keys import RunRef, WorkspaceRef
    from shared.services import scoring

    s = scoring_stack
    monkeypatch.setenv("BATCHAI_STORAGE_CONNECTION_STRING", s.endpoint["storage_connection_string"])
    s.upload_inputs("inputs-d", {f"in/d-{i}.txt": f"d {i}" for i in range(3)})
    run = s.upload_manifest(WS, "died", manifest("inputs-d", "outputs-d", itemsPerJob=2))
    props = s.wait_run(WS, run)["properties"]
    assert props["state"] == "succeeded"
    summary = json.loads(s.read_blob("outputs-d", props["summary"]["blob"]))
    ref = RunRef(WorkspaceRef(s.sub, s.rg, WS), run)
    runs = storage.table(s.endpoint["storage_connection_string"], storage.T_SCORING_RUNS)
    # As the dead host left it: the end saved, its effects not done (the index row last: a tick of the
    # stack's own that finds it does what this test's step would).
    s.blobs.get_container_client("outputs-d").delete_blob(props["summary"]["blob"])
    s.blobs.create_container(sc.work_container(run, 0, 1))
    runs.upsert_entity({"PartitionKey": scoring.ACTIVE, "RowKey": ref.index_row})
    settings = Settings.from_env()
    assert scoring.advance(settings, ref, datetime.now(UTC)) == "succeeded"
    assert json.loads(s.read_blob("outputs-d", props["summary"]["blob"])) == summary
    assert not [c.name for c in s.blobs.list_containers(name_starts_with=f"bsr-{sc.run_hash(run)}")]
    assert not list(runs.query_entities("PartitionKey eq @pk and RowKey eq @rk",
                                        parameters={"pk": scoring.ACTIVE, "rk": ref.index_row}))


@pytest.mark.parametrize("percent, state", [(10, "succeeded"), (2, "failed")])
def test_one_failing_item_within_or_over_the_threshold(scoring_stack: ScoringStack, percent: int,
                                                       state: str) -> None:
    s = scoring_stack
    container = f"inputs-t{percent}"
    items = {f"in/i-{i:02d}.txt": ("FAIL" if i == 7 else f"ok {i}") for i in range(20)}
    s.upload_inputs(container, items)
    body = manifest(container, f"outputs-t{percent}", itemsPerJob=5, maxRetries=1,
                    errorThreshold={"failedItemsPercent": percent})
    run = s.upload_manifest(WS, f"threshold{percent}", body)
    props = s.wait_run(WS, run)["properties"]
    assert props["state"] == state, props
    assert props["progress"]["items"]["failed"] == 1
    assert props["progress"]["jobs"]["retries"] == 1  # the failed item was tried once more, alone
    summary = json.loads(s.read_blob(f"outputs-t{percent}", props["summary"]["blob"]))
    failed = [r for r in summary["items"] if r["status"] == "failed"]
    assert [r["name"] for r in failed] == ["in/i-07.txt"]
    assert "cannot score in/i-07.txt" in failed[0]["error"]
    if state == "failed":
        assert "1 of 20 items failed, more than the threshold of 2%" in props["stateReason"]
        assert props["errors"][0]["code"] == "ErrorThresholdExceeded"
    else:
        assert len(s.names(f"outputs-t{percent}", "out/scored/")) == 19


def test_bad_manifests_are_failed_runs_readable_through_the_api(scoring_stack: ScoringStack) -> None:
    s = scoring_stack
    s.upload_inputs("inputs-empty", {"elsewhere/x.txt": "x"})
    cases = {
        "unparseable": ("{not json", "not valid JSON", WS),
        "unknownws": (json.dumps(manifest("inputs-a", "out-x")), "workspace 'nosuchws' was not found", "nosuchws"),
        "noinputs": (json.dumps(manifest("inputs-empty", "out-x")), "no input blobs under 'inputs-empty/in/'", WS),
    }
    runs = {case: (s.upload_manifest(ws, case, text), reason, ws) for case, (text, reason, ws) in cases.items()}
    for case, (run, reason, ws) in runs.items():
        props = s.wait_run(ws, run)["properties"]
        assert props["state"] == "failed", case
        assert reason.lower() in props["stateReason"].lower(), (case, props["stateReason"])
        assert props["errors"], case
    listed = s.api(f"{s.ws_path('nosuchws')}/batchScoringRuns").json()["value"]
    assert [r["name"] for r in listed] == [runs["unknownws"][0]]
    missing = s.api(f"{s.ws_path(WS)}/batchScoringRuns/nosuchrun")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    unauth = s.http.get(f"{s.endpoint['url']}{s.ws_path(WS)}/batchScoringRuns", params={"api-version": "2018-05-01"},
                        headers={"Authorization": "Bearer wrong"})
    assert unauth.status_code == 401
    bad_version = s.api(f"{s.ws_path(WS)}/batchScoringRuns", **{"api-version": "2099-01-01"})
    assert bad_version.status_code == 400


def test_cli_lists_and_shows_runs_with_progress(scoring_stack: ScoringStack, tmp_path) -> None:
    from typer.testing import CliRunner

    from shared.cli.main import app

    s = scoring_stack
    s.upload_inputs("inputs-cli", {f"in/c-{i}.txt": f"c {i}" for i in range(4)})
    run = s.upload_manifest(WS, "cli", manifest("inputs-cli", "outputs-cli", itemsPerJob=2))
    wait_until(lambda: s.run(WS, run), 30, what="the run to be recorded")
    endpoint = tmp_path / "endpoint.json"
    endpoint.write_text(json.dumps(s.endpoint))
    runner = CliRunner()
    shown = runner.invoke(app, ["--endpoint", str(endpoint), "scoring", "show", WS, run, "--watch",
                                "--interval", "0.3"])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"^state\s+succeeded$", shown.output, re.M), shown.output
    assert "4/4 items ok, 0 failed; 2/2 jobs done" in shown.output
    assert "items" in shown.output and "jobs" in shown.output  # the progress bars
    listed = runner.invoke(app, ["--endpoint", str(endpoint), "scoring", "list", WS, "-o", "json"])
    assert listed.exit_code == 0, listed.output
    assert run in [r["name"] for r in json.loads(listed.output)]
    missing = runner.invoke(app, ["--endpoint", str(endpoint), "scoring", "show", WS, "nosuchrun"])
    assert missing.exit_code == 1 and "ResourceNotFound" in missing.output
