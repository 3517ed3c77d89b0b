"""Quotas per VM family and priority, and of clusters, enforced on cluster create and resize with
ARM's answers (409 OperationNotAllowed for cores, 409 ClusterQuotaReached for clusters)."""

from __future__ import annotations

import httpx
import pytest

from tests.ingress.conftest import API, cluster_body, error_of, put, workspace


@pytest.fixture()
def quotas(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process API reads its settings per request."""
    monkeypatch.setenv("BATCHAI_QUOTA_DEDICATED_CORES", "40")
    monkeypatch.setenv("BATCHAI_QUOTA_DEDICATED_FAMILY_CORES", "standardNCFamily=12")
    monkeypatch.setenv("BATCHAI_QUOTA_LOWPRIORITY_CORES", "4")
    monkeypatch.setenv("BATCHAI_QUOTA_LOWPRIORITY_FAMILY_CORES", "standardDv2Family=100")  # the region's 4 bites
    monkeypatch.setenv("BATCHAI_QUOTA_CLUSTERS", "4")


def _scale(http: httpx.Client, cluster: str, nodes: int) -> httpx.Response:
    return http.patch(cluster, params=API, json={"properties": {"scaleSettings": {"manual": {"targetNodeCount":
                                                                                                nodes}}}})


def test_family_cores_are_held_by_targets_and_maximums(http: httpx.Client, sub: str, quotas: None) -> None:
    ws = workspace(http, sub)
    assert put(http, f"{ws}/clusters/gpu", cluster_body(2, "STANDARD_NC6")).status_code == 200  # 12 of 12
    refused = put(http, f"{ws}/clusters/gpu2", cluster_body(1, "STANDARD_NC6"))
    assert refused.status_code == 409, refused.text
    error = error_of(refused)
    assert error["code"] == "OperationNotAllowed"
    assert "Standard NC Family Dedicated Cores quota" in error["message"]
    assert "Current Limit: 12, Current Usage: 12, Additional Required: 6" in error["message"]
    assert http.get(f"{ws}/clusters/gpu2", params=API).status_code == 404
    assert _scale(http, f"{ws}/clusters/gpu", 3).status_code == 409
    assert _scale(http, f"{ws}/clusters/gpu", 1).status_code == 200
    assert put(http, f"{ws}/clusters/gpu2", cluster_body(1, "STANDARD_NC6")).status_code == 200  # 6 + 6 of 12
    auto = cluster_body(0, "Standard_NC12")
    auto["properties"]["scaleSettings"] = {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 1}}
    assert put(http, f"{ws}/clusters/auto", auto).status_code == 409  # its maximum holds 12 more
    assert put(http, f"{ws}/clusters/cpu", cluster_body(28)).status_code == 200  # Dv2: the regional 40 - 12


def test_regional_low_priority_cores_and_the_cluster_count(http: httpx.Client, sub: str, quotas: None) -> None:
    ws = workspace(http, sub)
    low = cluster_body(5, vmPriority="lowpriority")
    refused = put(http, f"{ws}/clusters/low", low)
    assert refused.status_code == 409 and "Total Regional Low Priority Cores" in error_of(refused)["message"]
    for i in range(4):
        assert put(http, f"{ws}/clusters/c{i}", cluster_body(0)).status_code == 200
    fifth = put(http, f"{ws}/clusters/c4", cluster_body(0))
    assert fifth.status_code == 409 and error_of(fifth)["code"] == "ClusterQuotaReached", fifth.text
    assert "Maximum allowed: 4, Current in use: 4" in error_of(fifth)["message"]
    again = put(http, f"{ws}/clusters/c0", cluster_body(0))
    assert again.status_code == 200  # the same request for an existing cluster is no new cluster
