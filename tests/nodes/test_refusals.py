"""A provider's permanent refusal of a cluster (bad VM size, quota, subnet) lands in the cluster's
`errors`, the cluster stays steady instead of resizing forever, and the errors clear once the
provider accepts the cluster again."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.compute.capabilities import ComputeRejected
from shared.adapters.compute.port import ClusterSpec, Instance
from shared.config import Settings
from shared.domain.resources import render_cluster
from shared.services import nodes
from shared.services.cluster_reconcile import reconcile_cluster
from tests.nodes.helpers import cluster_ref, put_cluster

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class RefusingProvider:
    """A provider port whose cloud refuses the cluster until `accept` is set."""

    name = "refusing"

    def __init__(self) -> None:
        self.accept = False
        self.targets: list[int] = []

    def reconcile(self, spec: ClusterSpec, target: int, remove: Sequence[str] = ()) -> None:
        if not self.accept:
            raise ComputeRejected("SkuNotAvailable", f"The requested VM size {spec.vm_size} is not available")
        self.targets.append(target)

    def list_instances(self, cluster_key: str) -> list[Instance]:
        return []

    def delete_cluster(self, cluster_key: str) -> None:
        return None


def test_a_refused_cluster_shows_the_refusal_until_accepted(storage_conn: str, tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn,
                                   state_dir=tmp_path / "state")
    ref = cluster_ref("refused1")
    put_cluster(storage_conn, ref, {"manual": {"targetNodeCount": 2}}, vmSize="STANDARD_ZZ99")
    provider = RefusingProvider()

    result = reconcile_cluster(settings, ref, T0, provider=provider)
    assert result.rejected == {"code": "SkuNotAvailable",
                               "message": "The requested VM size STANDARD_ZZ99 is not available"}
    shown = render_cluster(nodes.load_cluster(settings, ref.key).data, [])["properties"]
    assert shown["errors"] == [{"code": "SkuNotAvailable",
                                "message": "The requested VM size STANDARD_ZZ99 is not available"}]
    assert shown["allocationState"] == "steady"

    reconcile_cluster(settings, ref, T0, provider=provider)  # a repeated refusal writes nothing new
    assert len(render_cluster(nodes.load_cluster(settings, ref.key).data, [])["properties"]["errors"]) == 1

    provider.accept = True
    reconcile_cluster(settings, ref, T0, provider=provider)
    assert provider.targets == [2]
    shown = render_cluster(nodes.load_cluster(settings, ref.key).data, [])["properties"]
    assert "errors" not in shown and shown["allocationState"] == "resizing"
