"""The scoring service against Azurite, called directly: one run per blob version, failed runs
for manifests that cannot run, and the active-run index."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.adapters import storage
from shared.config import Settings
from shared.domain import scoring as sc
from shared.domain.keys import WorkspaceRef
from shared.services import scoring, scoring_start

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _active(conn: str) -> list[str]:
    return [e["RowKey"] for e in storage.table(conn, storage.T_SCORING_RUNS).query_entities(
        "PartitionKey eq @pk", parameters={"pk": scoring.ACTIVE})]


def test_one_run_per_blob_version_and_failed_runs_for_bad_manifests(storage_conn: str,
                                                                    api_endpoint: dict[str, str]) -> None:
    settings = Settings.from_env()
    owner = f"Bearer {api_endpoint['token']}"
    sub, rg = api_endpoint["subscription_id"], api_endpoint["resource_group"]
    blob = f"{sub}/{rg}/ghostws/m1.json"
    ref = scoring_start.start_from_blob(settings, blob, '"0x1"', b"{broken", NOW, owner)
    again = scoring_start.start_from_blob(settings, blob, '"0x1"', b"{broken", NOW, owner)
    assert ref is not None and ref == again and ref.workspace == WorkspaceRef(sub, rg, "ghostws")
    page = scoring.list_by_workspace(settings, ref.workspace, 100, None)
    assert [r["name"] for r in page.items] == [ref.name]
    props = page.items[0]["properties"]
    assert props["state"] == "failed" and "not valid JSON" in props["stateReason"]
    assert props["errors"] == [{"code": "InvalidManifest", "message": props["stateReason"]}]
    assert "internal" not in page.items[0]
    newer = scoring_start.start_from_blob(settings, blob, '"0x2"', b"{broken", NOW, owner)
    assert newer is not None and newer.name != ref.name
    manifest = {"cluster": "c", "experiment": "e", "input": {"container": "nothere"},
                "output": {"container": "out"}, "jobTemplate": {"properties": {
                    "stdOutErrPathPrefix": "x", "customToolkitSettings": {"commandLine": "true"}}}}
    unknown = scoring_start.start_from_blob(settings, f"{sub}/{rg}/ghostws/m2.json", "e",
                                            json.dumps(manifest).encode(), NOW, owner)
    assert unknown is not None
    body = scoring.get(settings, unknown).body["properties"]
    assert body["state"] == "failed" and "workspace 'ghostws' was not found" in body["stateReason"]
    assert body["errors"][0]["code"] == "WorkspaceNotFound"
    assert not [r for r in _active(storage_conn) if r.startswith(ref.workspace.child_pk)]
    assert sc.RunState(body["state"]) in sc.RUN_TERMINAL
