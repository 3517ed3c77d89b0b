"""Microsoft.Network public IP addresses and load balancers in the ARM emulator, as records: what a scale
set's inbound NAT pool makes of its instances.

A public IP gets a static address from the emulator's allocator. A load balancer keeps its frontend IP
configurations and inbound NAT pools; as in Azure, each instance of a scale set whose IP configuration
names a pool gets an inbound NAT rule `{pool}.{instance id}` with the pool's next frontend port (the
range start plus the instance id), shown in the load balancer's `inboundNatRules` and in the instance's
NIC (`loadBalancerInboundNatRules`). Nothing is forwarded: the records say what Azure would expose.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from shared.emulator.arm import records
from shared.emulator.arm.wire import NETWORK_VERSIONS, ArmError, Reply, Request

if TYPE_CHECKING:
    from shared.emulator.arm.server import ArmEmulator

RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network"
NS = "Microsoft.Network"
PUBLIC_IP_TYPE = "Microsoft.Network/publicIPAddresses"
LB_TYPE = "Microsoft.Network/loadBalancers"


def register(arm: ArmEmulator) -> None:
    for kind, put in (("publicIPAddresses", put_public_ip), ("loadBalancers", put_load_balancer)):
        path = RG + rf"/{kind}/(?P<name>[^/]+)"
        arm.route("PUT", path, put, NETWORK_VERSIONS)
        arm.route("GET", path, get_resource, NETWORK_VERSIONS)
        arm.route("DELETE", path, delete_resource, NETWORK_VERSIONS)
        arm.route("GET", RG + rf"/{kind}", list_resources, NETWORK_VERSIONS)


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.body, dict) or not request.body.get("location"):
        raise ArmError(400, "InvalidRequestFormat", "the resource needs a location")
    return request.body


def _created(arm: ArmEmulator, rid: str, res: dict[str, Any]) -> Reply:
    existed = rid.lower() in arm.resources
    res["properties"]["provisioningState"] = "Updating"
    arm.resources[rid.lower()] = res

    def done() -> None:
        res["properties"]["provisioningState"] = "Succeeded"

    return Reply(200 if existed else 201, view(arm, res), arm.begin(NS, rid, res["location"], done))


def put_public_ip(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = request.path.rstrip("/"), _body(request)
    current = arm.resources.get(rid.lower())
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type=PUBLIC_IP_TYPE)
    res.setdefault("properties", {})
    res["properties"]["publicIPAllocationMethod"] = "Static"
    res["properties"]["ipAddress"] = current["properties"]["ipAddress"] if current else arm.allocate_ip()
    return _created(arm, rid, res)


def put_load_balancer(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = request.path.rstrip("/"), _body(request)
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type=LB_TYPE)
    props = res.setdefault("properties", {})
    for kind in ("frontendIPConfigurations", "inboundNatPools", "backendAddressPools"):
        for item in props.get(kind) or []:
            item["id"] = f"{rid}/{kind}/{item['name']}"
    for pool in props.get("inboundNatPools") or []:
        p = pool.get("properties") or {}
        if not (0 < int(p.get("frontendPortRangeStart", 0)) <= int(p.get("frontendPortRangeEnd", 0)) < 65535):
            raise ArmError(400, "InvalidRequestFormat", f"inbound NAT pool {pool['name']}: bad frontend port range")
    props.pop("inboundNatRules", None)  # derived from the pools and the scale sets that use them
    return _created(arm, rid, res)


def get_resource(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    arm.observe(rid)
    return Reply(200, view(arm, arm.get(rid)))


def list_resources(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    prefix = request.path.rstrip("/").lower() + "/"
    found = [res for rid, res in list(arm.resources.items()) if rid.startswith(prefix) and "/" not in rid[len(prefix):]]
    return Reply(200, {"value": [view(arm, res) for res in found]})


def delete_resource(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    if res["type"] == LB_TYPE and nat_rules(arm, res):
        raise ArmError(400, "InUseLoadBalancerCannotBeDeleted", f"Load balancer {rid} is in use by a scale set.")
    res["properties"]["provisioningState"] = "Deleting"
    return Reply(202, None, arm.begin(NS, rid, res["location"], lambda: arm.resources.pop(rid.lower(), None)))


def view(arm: ArmEmulator, res: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(res)
    if res["type"] == LB_TYPE:
        out["properties"]["inboundNatRules"] = [rule for rule, _ in nat_rules(arm, res)]
    return out


def nat_rules(arm: ArmEmulator, lb: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The inbound NAT rules the load balancer's pools give the scale set instances that use them, each
    with the id of the instance's IP configuration it forwards to."""
    pools = {p["id"].lower(): p for p in lb["properties"].get("inboundNatPools") or []}
    found: list[tuple[dict[str, Any], str]] = []
    for res in list(arm.resources.values()):
        if res["type"] != records.VMSS_TYPE:
            continue
        for pool_id in pool_ids(res):
            pool = pools.get(pool_id.lower())
            if pool is None:
                continue
            p = pool["properties"]
            for iid in sorted(res["_instances"], key=int):
                port = int(p["frontendPortRangeStart"]) + int(iid)
                if port > int(p["frontendPortRangeEnd"]):
                    continue  # the range is exhausted: Azure refuses the capacity; here the instance has no rule
                config = instance_ip_config(res, iid)
                rule = {"id": f"{lb['id']}/inboundNatRules/{pool['name']}.{iid}", "name": f"{pool['name']}.{iid}",
                        "properties": {"frontendPort": port, "backendPort": int(p["backendPort"]),
                                       "protocol": p.get("protocol", "Tcp"),
                                       "frontendIPConfiguration": copy.deepcopy(p.get("frontendIPConfiguration")),
                                       "backendIPConfiguration": {"id": config}, "provisioningState": "Succeeded"}}
                found.append((rule, config))
    return found


def pool_ids(vmss: dict[str, Any]) -> list[str]:
    """The inbound NAT pools the scale set's primary IP configuration names."""
    nics = vmss["properties"]["virtualMachineProfile"].get("networkProfile", {}).get("networkInterfaceConfigurations")
    for nic in nics or []:
        for config in (nic.get("properties") or {}).get("ipConfigurations") or []:
            pools = (config.get("properties") or {}).get("loadBalancerInboundNatPools") or []
            return [str(p["id"]) for p in pools]
    return []


def instance_ip_config(vmss: dict[str, Any], iid: str) -> str:
    return f"{vmss['id']}/virtualMachines/{iid}/networkInterfaces/nic0/ipConfigurations/ip0"


def instance_nat_rules(arm: ArmEmulator, vmss: dict[str, Any], iid: str) -> list[dict[str, str]]:
    """References to the inbound NAT rules that forward to one instance (what its NIC shows)."""
    config = instance_ip_config(vmss, iid).lower()
    refs: list[dict[str, str]] = []
    for pool_id in pool_ids(vmss):
        lb = arm.resources.get(pool_id.lower().split("/inboundnatpools/")[0])
        if lb is not None:
            refs += [{"id": rule["id"]} for rule, target in nat_rules(arm, lb) if target.lower() == config]
    return refs
