"""Microsoft.Network in the ARM emulator: network interfaces, and the NICs of scale set VMs (with the inbound
NAT rules of their scale set's load balancer, see `load_balancers`).

A NIC gets a private IP from the emulator's allocator (dynamic allocation, as in a subnet); a NIC
attached to a VM cannot be deleted (400 NicInUse), as in Azure.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from shared.emulator.arm import load_balancers
from shared.emulator.arm.wire import NETWORK_VERSIONS, VMSS_NIC_VERSIONS, ArmError, Reply, Request

if TYPE_CHECKING:
    from shared.emulator.arm.server import ArmEmulator

RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers"
NS = "Microsoft.Network"


def register(arm: ArmEmulator) -> None:
    nic = RG + r"/Microsoft\.Network/networkInterfaces/(?P<name>[^/]+)"
    arm.route("PUT", nic, put_nic, NETWORK_VERSIONS)
    arm.route("GET", nic, get_nic, NETWORK_VERSIONS)
    arm.route("DELETE", nic, delete_nic, NETWORK_VERSIONS)
    arm.route("GET", RG + r"/Microsoft\.Compute/virtualMachineScaleSets/(?P<vmss>[^/]+)/networkInterfaces",
              list_vmss_nics, VMSS_NIC_VERSIONS)


def put_nic(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    body = request.body if isinstance(request.body, dict) else {}
    configs = (body.get("properties") or {}).get("ipConfigurations") or []
    if not body.get("location") or not configs or not (configs[0].get("properties") or {}).get("subnet"):
        raise ArmError(400, "InvalidRequestFormat", "a NIC needs a location and an ipConfiguration with a subnet")
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type="Microsoft.Network/networkInterfaces")
    res["properties"]["provisioningState"] = "Updating"
    for config in res["properties"]["ipConfigurations"]:
        config["properties"].setdefault("privateIPAllocationMethod", "Dynamic")
        config["properties"]["privateIPAddress"] = arm.allocate_ip()
    arm.resources[rid.lower()] = res

    def done() -> None:
        res["properties"]["provisioningState"] = "Succeeded"

    return Reply(201, copy.deepcopy(res), arm.begin(NS, rid, res["location"], done))


def get_nic(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    arm.observe(rid)
    return Reply(200, copy.deepcopy(arm.get(rid)))


def delete_nic(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    vm = res["properties"].get("virtualMachine")
    if vm:
        raise ArmError(400, "NicInUse", f"Network Interface {rid} is used by existing resource {vm['id']}.")
    res["properties"]["provisioningState"] = "Deleting"
    return Reply(202, None, arm.begin(NS, rid, res["location"], lambda: arm.resources.pop(rid.lower(), None)))


def list_vmss_nics(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    vmss_id = request.path.rstrip("/").rsplit("/", 1)[0]
    res = arm.get(vmss_id)
    nics: list[dict[str, Any]] = []
    for vm in sorted(res["_instances"].values(), key=lambda vm: int(vm["instanceId"])):
        nic_id = vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
        nics.append({
            "id": nic_id, "name": "nic0", "type": "Microsoft.Network/networkInterfaces",
            "properties": {
                "provisioningState": "Succeeded", "primary": True,
                "virtualMachine": {"id": vm["id"]},
                "ipConfigurations": [{"id": f"{nic_id}/ipConfigurations/ip0", "name": "ip0", "properties": {
                    "privateIPAddress": vm["_ip"], "privateIPAllocationMethod": "Dynamic", "primary": True,
                    "loadBalancerInboundNatRules": load_balancers.instance_nat_rules(arm, res, vm["instanceId"])}}],
            },
        })
    return Reply(200, {"value": nics})
