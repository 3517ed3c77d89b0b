"""Helpers of the sweep tests: a child job's stdout written as a node agent streams it (an append blob under
the job's output prefix), with one metric line per value."""

from __future__ import annotations

import httpx

from shared.adapters import storage

API = "api-version=2018-05-01"


def report(http: httpx.Client, conn: str, ws: str, job: str, name: str, *values: float) -> None:
    """Job `job` of experiment `e` in workspace `ws` (its ARM id; the workspace is named "ws") logs `values`
    of metric `name` at steps 1, 2, ... (after what it logged before)."""
    r = http.get(f"{ws}/experiments/e/jobs/{job}?{API}")
    assert r.status_code == 200, r.text
    segment = r.json()["properties"]["jobOutputDirectoryPathSegment"]
    prefix = storage.output_prefix("ws", "e", job, segment) + "/stdouterr/"
    blob = storage.container(conn, storage.C_OUTPUTS).get_blob_client(prefix + "stdout.txt")
    if not blob.exists():
        blob.create_append_blob()
    lines = "".join(f"epoch\n##batchai[metric name={name} value={v}]\n" for v in values)
    blob.append_block(lines.encode())
