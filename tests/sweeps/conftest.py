"""Helpers of the sweep tests: a child job's stdout written as a node agent streams it (an append blob under
the job's output prefix), with one metric line per value."""

from __future__ import annotations

import httpx

from shared.adapters import storage

API = "api-version=2018-05-01"


def report(http: httpx.Client, conn: str, ws: str, job: str, name: str, *values: float, exp: str = "e") -> None:
    """Job `job` of experiment `exp` in workspace `ws` (its ARM id) logs `values` of metric `name` at steps
    1, 2, ... (after what it logged before)."""
    r = http.get(f"{ws}/experiments/{exp}/jobs/{job}?{API}")
    assert r.status_code == 200, r.text
    segment = r.json()["properties"]["jobOutputDirectoryPathSegment"]
    prefix = storage.output_prefix(ws.rsplit("/", 1)[-1], exp, job, segment) + "/stdouterr/"
    blob = storage.container(conn, storage.C_OUTPUTS).get_blob_client(prefix + "stdout.txt")
    if not blob.exists():
        blob.create_append_blob()
    lines = "".join(f"epoch\n##batchai[metric name={name} value={v}]\n" for v in values)
    blob.append_block(lines.encode())


def contract_errors(instance: object, definition: str) -> list[str]:
    """Where `instance` breaks the definition of the sweeps addition's OpenAPI (shared/domain/contract/
    sweeps.json; swagger 2.0's x-nullable read as JSON Schema's null type)."""
    import json

    import jsonschema

    from shared.domain.contract import CONTRACT_DIR

    def nullable(node: object) -> object:
        if isinstance(node, dict):
            out = {k: nullable(v) for k, v in node.items() if k != "x-nullable"}
            if node.get("x-nullable") and isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
            return out
        return [nullable(v) for v in node] if isinstance(node, list) else node

    doc = nullable(json.loads((CONTRACT_DIR / "sweeps.json").read_text()))
    assert isinstance(doc, dict)
    schema = {"$ref": f"#/definitions/{definition}", "definitions": doc["definitions"]}
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(
        instance)]
