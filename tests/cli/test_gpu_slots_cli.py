"""`batchai cluster create --packing` and `batchai job create --gpus-per-node` against the real API: the
service stores what the CLI sent (read back over raw HTTP: the SDK's models know neither property)."""

from __future__ import annotations

import json
import ssl
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.cli.conftest import Run, as_json


def raw(api_endpoint: dict[str, str], path: str) -> dict[str, Any]:
    verify = ssl.create_default_context(cafile=api_endpoint["ca_file"])
    base = (f"/subscriptions/{api_endpoint['subscription_id']}/resourceGroups/{api_endpoint['resource_group']}"
            f"/providers/Microsoft.BatchAI")
    with httpx.Client(base_url=api_endpoint["url"], verify=verify, timeout=30,
                      headers={"Authorization": f"Bearer {api_endpoint['token']}"}) as http:
        response = http.get(f"{base}{path}?api-version=2018-05-01")
    response.raise_for_status()
    return dict(response.json())


def test_packing_and_gpus_per_node_from_the_cli(batchai: Run, api_endpoint: dict[str, str], tmp_path: Path) -> None:
    ws = f"cli-gpus-{uuid.uuid4().hex[:6]}"
    batchai("workspace", "create", ws)
    batchai("experiment", "create", ws, "exp")
    created = as_json(batchai("cluster", "create", ws, "packed", "--vm-size", "STANDARD_NC12", "--target", "0",
                              "-u", "u", "-p", "p", "--packing", "gpu-slots", "-o", "json"))
    assert created["name"] == "packed"
    assert raw(api_endpoint, f"/workspaces/{ws}/clusters/packed")["properties"]["packing"] == "gpu-slots"
    assert as_json(batchai("cluster", "show", ws, "packed", "-o", "json"))["properties"]["packing"] == "gpu-slots"
    assert "packing" in batchai("cluster", "show", ws, "packed").stdout  # the table shows it too
    refused = batchai("cluster", "create", ws, "spread", "--vm-size", "STANDARD_NC12", "-u", "u", "-p", "p",
                      "--packing", "spread", check=False)
    assert refused.exit_code == 1 and "properties.packing" in refused.stderr

    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"properties": {"customToolkitSettings": {"commandLine": "true"},
                                                   "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs"}}))
    shown = as_json(batchai("job", "create", ws, "exp", "two", "-f", str(job_file), "--cluster", "packed",
                            "--gpus-per-node", "2", "-o", "json"))
    assert shown["name"] == "two"
    assert raw(api_endpoint, f"/workspaces/{ws}/experiments/exp/jobs/two")["properties"]["gpusPerNode"] == 2
    assert as_json(batchai("job", "show", ws, "exp", "two", "-o", "json"))["properties"]["gpusPerNode"] == 2
    too_many = batchai("job", "create", ws, "exp", "three", "-f", str(job_file), "--cluster", "packed",
                       "--gpus-per-node", "3", check=False)
    assert too_many.exit_code == 1 and "gpusPerNode" in too_many.stderr
    plain = batchai("job", "create", ws, "exp", "plain", "-f", str(job_file), "--cluster", "packed")
    assert plain.exit_code == 0
    assert "gpusPerNode" not in raw(api_endpoint, f"/workspaces/{ws}/experiments/exp/jobs/plain")["properties"]
