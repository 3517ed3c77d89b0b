"""The local provider declares the GPUs of the cluster's VM size to its node processes."""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from shared.adapters.compute.local import LocalProvider, stop_all
from shared.adapters.compute.port import ClusterSpec
from tests.nodes.helpers import stand_in, wait_until


def test_a_node_of_a_gpu_size_is_declared_its_gpus(storage_conn: str, tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "state", storage_conn, command=stand_in, leave_wait_s=0.5, grace_s=2.0)
    try:
        declared = {}
        for size, key in (("STANDARD_NC12", "s|rg|ws|gpu12"), ("STANDARD_D1_V2", "s|rg|ws|cpu1")):
            provider.reconcile(ClusterSpec(key, "/x", size, "dedicated"), 1)
            [instance] = provider.list_instances(key)
            node_dir = provider.state_dir / "nodes" / instance.node_id
            wait_until(lambda d=node_dir: (d / "started").exists())
            record = json.loads((node_dir / "instance.json").read_text())
            declared[size] = psutil.Process(record["pid"]).environ().get("BATCHAI_NODE_GPUS")
        assert declared == {"STANDARD_NC12": "2", "STANDARD_D1_V2": None}
    finally:
        stop_all(provider.state_dir, grace_s=2.0)
