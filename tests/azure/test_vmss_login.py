"""Remote login to scale-set nodes through the cluster's load balancer (node_ssh_nat), against the ARM
emulator with the real azure-mgmt-compute and azure-mgmt-network clients: the public IP and the load
balancer come first, the scale set's NICs name its inbound NAT pool, each node is reported at the public
address and its own frontend port, and the load balancer goes after the scale set."""

from __future__ import annotations

import dataclasses

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.azure_clients import AzureClients
from shared.adapters.compute.vmss import VmssProvider, node_id_of, scale_set_name
from shared.adapters.compute.vmss_login import PORT_START, load_balancer_name, public_ip_name
from shared.emulator.arm import ArmEmulator
from tests.azure.helpers import azure_settings, cluster_spec, wait_until


def test_nodes_are_reached_at_the_load_balancers_nat_ports(arm: ArmEmulator, clients: AzureClients) -> None:
    provider = VmssProvider(clients, dataclasses.replace(azure_settings(), node_ssh_nat=True))
    spec = cluster_spec("STANDARD_D1_V2", "dedicated", name="nat")
    key, name = spec.cluster_key, scale_set_name(spec.cluster_key)

    def created() -> bool:
        provider.reconcile(spec, 2)
        return bool(arm.requests("PUT", "virtualMachineScaleSets"))
    wait_until(created, what="the scale set to be created")
    order = [r.path.split("/")[-2] for r in arm.requests("PUT")]
    assert order == ["publicIPAddresses", "loadBalancers", "virtualMachineScaleSets"]
    lb_id = arm.requests("PUT", "loadBalancers")[0].path
    pool = arm.requests("PUT", "loadBalancers")[0].body["properties"]["inboundNatPools"][0]
    assert pool["name"] == "ssh" and pool["properties"]["backendPort"] == 22
    assert pool["properties"]["frontendPortRangeStart"] == PORT_START
    ip_config = arm.requests("PUT", "virtualMachineScaleSets")[0].body["properties"]["virtualMachineProfile"][
        "networkProfile"]["networkInterfaceConfigurations"][0]["properties"]["ipConfigurations"][0]["properties"]
    assert ip_config["loadBalancerInboundNatPools"] == [{"id": f"{lb_id}/inboundNatPools/ssh"}]

    def running() -> list[tuple[str, str, int]]:
        instances = provider.list_instances(key)
        ok = len(instances) == 2 and all(i.state == "running" and i.login_port for i in instances)
        return [(i.node_id, i.login_address, i.login_port) for i in instances] if ok else []
    public = clients.network.public_ip_addresses.get("batchai-compute", public_ip_name(name))
    address = public["properties"]["ipAddress"]
    assert wait_until(running) == [(node_id_of(key, "0"), address, PORT_START),
                                   (node_id_of(key, "1"), address, PORT_START + 1)]
    assert key in provider.clusters()

    # Deleting the cluster: the scale set, then the load balancer and its public IP; listed until all are gone.
    def gone() -> bool:
        provider.delete_cluster(key)
        return key not in provider.clusters()
    wait_until(gone, what="the cluster's scale set, load balancer and public IP to be deleted")
    deletes = [r.path.split("/")[-2] for r in arm.requests("DELETE")]
    assert deletes == ["virtualMachineScaleSets", "loadBalancers", "publicIPAddresses"]
    with pytest.raises(ResourceNotFoundError):
        clients.network.load_balancers.get("batchai-compute", load_balancer_name(name))
