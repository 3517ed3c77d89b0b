"""Builders shared by the Azure provider tests: cluster specs, settings, polling with a deadline."""

from __future__ import annotations

from typing import Any

from shared.adapters.compute.port import ClusterSpec
from shared.config import AzureComputeSettings
from tests.polling import wait_until  # noqa: F401 - shared by this package's tests

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


def cluster_spec(vm_size: str = "STANDARD_NC6", priority: str = "lowpriority", name: str = "gpu",
                 **properties: Any) -> ClusterSpec:
    key = f"{SUBSCRIPTION}|demo|ws|{name}"
    props: dict[str, Any] = {
        "vmSize": vm_size, "vmPriority": priority,
        "scaleSettings": {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 4, "initialNodeCount": 0}},
        "userAccountSettings": {"adminUserName": "demo", "adminUserSshPublicKey": "ssh-ed25519 AAAAC3Nza demo@host"},
        **properties,
    }
    return ClusterSpec(cluster_key=key, arm_id=f"/subscriptions/{SUBSCRIPTION}/resourceGroups/demo/providers/"
                       f"Microsoft.BatchAI/workspaces/ws/clusters/{name}", vm_size=vm_size, vm_priority=priority,
                       properties=props)


def azure_settings(**overrides: str) -> AzureComputeSettings:
    values = {
        "subscription_id": SUBSCRIPTION, "resource_group": "batchai-compute", "location": "westeurope",
        "subnet_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/batchai/providers/Microsoft.Network/"
                     "virtualNetworks/batchai-vnet/subnets/nodes",
        "identity_resource_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/batchai/providers/"
                                "Microsoft.ManagedIdentity/userAssignedIdentities/batchai-nodes",
        "identity_client_id": "11111111-2222-3333-4444-555555555555",
        "ssh_public_key": "", "node_service_url": "https://batchai.example.net",
        "storage_account": "batchaistate",
    }
    values.update(overrides)
    return AzureComputeSettings(**values)
