"""The scoring service against Azurite, called directly: one run per blob version, failed runs
for manifests that cannot run, and the active-run index."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.adapters import storage
from shared.config import Settings
from shared.domain import scoring as sc
from shared.domain.keys import WorkspaceRef
from shared.services import scoring

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _active(conn: str) -> list[str]:
    return [e["RowKey"] for e in storage.table(conn, storage.T_SCORING_RUNS).query_entities(
        "PartitionKey eq @pk", parameters={"pk": scoring.ACTIVE})]


def test_one_run_per_blob_version_and_failed_runs_for_bad_manifests(storage_conn: str) -> None:
    settings = Settings.from_env()
    sub, rg = scoring.defaults()
    ref = scoring.start_from_blob(settings, "ghostws/m1.json", '"0x1"', b"{broken", NOW)
    again = scoring.start_from_blob(settings, "ghostws/m1.json", '"0x1"', b"{broken", NOW)
    assert ref == again and ref.workspace == WorkspaceRef(sub, rg, "ghostws")
    page = scoring.list_by_workspace(settings, ref.workspace, 100, None)
    assert [r["name"] for r in page.items] == [ref.name]
    props = page.items[0]["properties"]
    assert props["state"] == "failed" and "not valid JSON" in props["stateReason"]
    assert props["errors"] == [{"code": "InvalidManifest", "message": props["stateReason"]}]
    assert "internal" not in page.items[0]
    newer = scoring.start_from_blob(settings, "ghostws/m1.json", '"0x2"', b"{broken", NOW)
    assert newer.name != ref.name
    manifest = {"cluster": "c", "experiment": "e", "input": {"container": "nothere"},
                "output": {"container": "out"}, "jobTemplate": {"properties": {
                    "stdOutErrPathPrefix": "x", "customToolkitSettings": {"commandLine": "true"}}}}
    unknown = scoring.start_from_blob(settings, "ghostws/m2.json", "e", json.dumps(manifest).encode(), NOW)
    body = scoring.get(settings, unknown).body["properties"]
    assert body["state"] == "failed" and "workspace 'ghostws' was not found" in body["stateReason"]
    assert not [r for r in _active(storage_conn) if r.startswith(ref.workspace.child_pk)]
    assert sc.RunState(body["state"]) in sc.RUN_TERMINAL
