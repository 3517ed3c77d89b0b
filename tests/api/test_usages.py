"""Usages: VM sizes to quota families, configurable limits, and the counts from node rows (real Azurite)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from azure.mgmt.batchai import BatchAI, models

from shared.adapters import storage
from shared.adapters.compute.vm_sizes import LISTED_FAMILIES, family, family_display
from shared.config import QuotaSettings, Settings
from shared.domain.keys import ClusterRef, WorkspaceRef
from shared.services.usages import list_usages
from tests.api.conftest import StaticToken


@pytest.mark.parametrize(("size", "expected"), [
    ("STANDARD_D1_V2", "standardDv2Family"), ("Standard_DS2_v2", "standardDSv2Family"),
    ("STANDARD_D1", "standardDFamily"), ("Standard_D4s_v3", "standardDSv3Family"),
    ("Standard_D4_v3", "standardDv3Family"), ("STANDARD_NC6", "standardNCFamily"),
    ("Standard_NC6s_v2", "standardNCSv2Family"), ("Standard_NC24s_v3", "standardNCSv3Family"),
    ("Standard_ND6s", "standardNDSFamily"), ("standard_nv6", "standardNVFamily"),
    ("Standard_A2_v2", "standardAv2Family"), ("Standard_F4s_v2", "standardFSv2Family"),
])
def test_vm_size_family(size: str, expected: str) -> None:
    assert family(size) == expected


def test_family_display_names_follow_batch_ai() -> None:
    assert family_display("standardNCSv3Family") == "Standard NCv3 Family"
    assert family_display("standardDSv3Family") == "Standard DSv3 Family"
    assert set(LISTED_FAMILIES) == {family(s) for s in ("Standard_D1", "Standard_D1_v2", "Standard_NC6",
                                                        "Standard_NC6s_v2", "Standard_NC6s_v3", "Standard_ND6s",
                                                        "Standard_NV6")}


def test_family_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHAI_QUOTA_DEDICATED_CORES", "100")
    monkeypatch.setenv("BATCHAI_QUOTA_DEDICATED_FAMILY_CORES", "standardNCFamily=24, standardNDSFamily=0")
    quota = QuotaSettings.from_env()
    assert quota.family_limit("standardNCFamily", "dedicated") == 24
    assert quota.family_limit("standardNDSFamily", "dedicated") == 0
    assert quota.family_limit("standardDv2Family", "dedicated") == 100
    assert quota.family_limit("standardNCFamily", "lowpriority") == quota.lowpriority_cores
    monkeypatch.setenv("BATCHAI_QUOTA_LOWPRIORITY_FAMILY_CORES", "standardNCFamily")
    with pytest.raises(ValueError, match="family=limit"):
        QuotaSettings.from_env()


def test_usages_count_vm_size_cores_of_nodes_not_lost(api_endpoint: dict[str, str]) -> None:
    sub = str(uuid.uuid4())  # a subscription of its own: the counts are this test's alone
    client = BatchAI(StaticToken(api_endpoint["token"]), sub, base_url=api_endpoint["url"],
                     connection_verify=api_endpoint["ca_file"], polling_interval=0.2)
    rg = api_endpoint["resource_group"]
    client.workspaces.begin_create(rg, "w", models.WorkspaceCreateParameters(location="eastus")).result()
    for name, size, priority in (("gpu", "STANDARD_NC6", "dedicated"), ("cpu", "Standard_D4s_v3", "lowpriority")):
        client.clusters.begin_create(rg, "w", name, models.ClusterCreateParameters(
            vm_size=size, vm_priority=priority, user_account_settings=models.UserAccountSettings(admin_user_name="u"),
            scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=0)))).result()
    settings = dataclasses.replace(Settings.from_env(), quota=QuotaSettings(
        dedicated_cores=50, dedicated_family_cores={"standardNCFamily": 12}))
    sched = storage.table(settings.storage_connection_string, storage.T_SCHED)
    ws = WorkspaceRef(sub, rg, "w")
    for cluster, node, state in (("gpu", "g1", "running"), ("gpu", "g2", "idle"), ("gpu", "g3", "lost"),
                                 ("cpu", "c1", "preparing")):
        sched.upsert_entity({"PartitionKey": ClusterRef(ws, cluster).key, "RowKey": f"node|{node}", "state": state,
                             "cores": 2})  # the agent's inventory does not change what a quota counts

    usages = {u["name"]["value"]: u for u in list_usages(settings, sub, "eastus")}
    current = {k: u["currentValue"] for k, u in usages.items() if u["currentValue"]}
    assert current == {"Clusters": 2, "Total Cluster Dedicated Regional vCPUs": 12,
                       "Standard NC Family Cluster Dedicated vCPUs": 12,
                       "Total Cluster LowPriority Regional vCPUs": 4,
                       "Standard DSv3 Family Cluster LowPriority vCPUs": 4}
    assert usages["Standard NC Family Cluster Dedicated vCPUs"]["limit"] == 12
    assert usages["Standard Dv2 Family Cluster Dedicated vCPUs"]["limit"] == 50
    assert usages["Standard DSv3 Family Cluster Dedicated vCPUs"]["currentValue"] == 0
    assert usages["Standard DSv3 Family Cluster LowPriority vCPUs"]["name"]["localizedValue"] == \
        "Standard DSv3 Family Cluster Low Priority vCPUs"
    assert all(u["unit"] == "Count" for u in usages.values())
    client.workspaces.begin_delete(rg, "w").result()
