"""Microsoft.Compute in the ARM emulator: VM scale sets and their VMs, virtual machines, managed disks.

Scale set instances follow Azure's uniform model: instance ids count up from 0, the computer
name is the prefix plus the instance id in base 36 on 6 characters, a capacity increase adds
instances (Creating until the operation completes), a decrease removes the highest unprotected
instance ids, deleteInstances removes exactly the named ones and lowers the capacity.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from shared.emulator.arm.server import COMPUTE_VERSIONS, DISK_VERSIONS, ArmEmulator, ArmError, Reply, Request

RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute"
VMSS = RG + r"/virtualMachineScaleSets/(?P<name>[^/]+)"
NS = "Microsoft.Compute"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int, width: int = 6) -> str:
    out = ""
    while n:
        n, digit = divmod(n, 36)
        out = _B36[digit] + out
    return out.rjust(width, "0")


def register(arm: ArmEmulator) -> None:
    v = COMPUTE_VERSIONS
    arm.route("GET", RG + r"/virtualMachineScaleSets", list_vmss, v)
    arm.route("PUT", VMSS, put_vmss, v)
    arm.route("GET", VMSS, get_vmss, v)
    arm.route("PATCH", VMSS, patch_vmss, v)
    arm.route("DELETE", VMSS, delete_vmss, v)
    arm.route("POST", VMSS + r"/delete", delete_instances, v)
    arm.route("GET", VMSS + r"/virtualMachines", list_vmss_vms, v)
    arm.route("GET", VMSS + r"/virtualMachines/(?P<iid>[^/]+)", get_vmss_vm, v)
    arm.route("PUT", VMSS + r"/virtualMachines/(?P<iid>[^/]+)", put_vmss_vm, v)
    arm.route("PUT", RG + r"/virtualMachines/(?P<name>[^/]+)", put_vm, v)
    arm.route("GET", RG + r"/virtualMachines/(?P<name>[^/]+)", get_vm, v)
    arm.route("DELETE", RG + r"/virtualMachines/(?P<name>[^/]+)", delete_vm, v)
    arm.route("PUT", RG + r"/disks/(?P<name>[^/]+)", put_disk, DISK_VERSIONS)
    arm.route("GET", RG + r"/disks/(?P<name>[^/]+)", get_disk, DISK_VERSIONS)
    arm.route("DELETE", RG + r"/disks/(?P<name>[^/]+)", delete_disk, DISK_VERSIONS)


def _rid(request: Request) -> str:
    return request.path.rstrip("/")


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.body, dict):
        raise ArmError(400, "InvalidRequestContent", "the request body must be a JSON object")
    return request.body


# -- scale sets -------------------------------------------------------------------------------
def put_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = _rid(request), _body(request)
    if rid.lower() in arm.resources:
        raise ArmError(409, "OperationNotAllowed", "replacing an existing scale set is not emulated")
    profile = (body.get("properties") or {}).get("virtualMachineProfile") or {}
    if not body.get("location") or not (body.get("sku") or {}).get("name"):
        raise ArmError(400, "InvalidParameter", "location and sku.name are required")
    if not (profile.get("osProfile") or {}).get("computerNamePrefix"):
        raise ArmError(400, "InvalidParameter", "osProfile.computerNamePrefix is required")
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type="Microsoft.Compute/virtualMachineScaleSets")
    res["properties"]["provisioningState"] = "Creating"
    res["properties"]["uniqueId"] = str(uuid.uuid4())
    res["properties"]["virtualMachineProfile"]["osProfile"].pop("customData", None)  # never returned by GET
    res["_instances"] = {}
    res["_next"] = 0
    arm.resources[rid.lower()] = res
    _scale_to(arm, res, int(body["sku"].get("capacity", 0)))
    headers = arm.begin(NS, rid, res["location"], lambda: _settle_vmss(arm, res))
    return Reply(201, _public(res), headers)


def get_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = _rid(request)
    arm.observe(rid)
    return Reply(200, _public(arm.get(rid)))


def list_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    prefix = _rid(request).lower() + "/"
    found = [rid for rid, res in arm.resources.items()
             if rid.startswith(prefix) and res["type"] == "Microsoft.Compute/virtualMachineScaleSets"]
    for rid in found:
        arm.observe(rid)
    return Reply(200, {"value": [_public(arm.resources[rid]) for rid in found if rid in arm.resources]})


def patch_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = _rid(request), _body(request)
    res = arm.get(rid)
    if res["properties"]["provisioningState"] == "Deleting":
        raise ArmError(409, "OperationNotAllowed", "the scale set is being deleted")
    capacity = (body.get("sku") or {}).get("capacity")
    if capacity is not None:
        res["sku"]["capacity"] = int(capacity)
        _scale_to(arm, res, int(capacity))
    res["properties"]["provisioningState"] = "Updating"
    headers = arm.begin(NS, rid, res["location"], lambda: _settle_vmss(arm, res))
    return Reply(200, _public(res), headers)


def delete_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = _rid(request)
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    res["properties"]["provisioningState"] = "Deleting"
    for vm in res["_instances"].values():
        vm["properties"]["provisioningState"] = "Deleting"
    headers = arm.begin(NS, rid, res["location"], lambda: arm.resources.pop(rid.lower(), None))
    return Reply(202, None, headers)


def delete_instances(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = _rid(request).rsplit("/", 1)[0]
    res = arm.get(rid)
    ids = [str(i) for i in (_body(request).get("instanceIds") or [])]
    unknown = [i for i in ids if i not in res["_instances"]]
    if not ids or unknown:
        raise ArmError(400, "InvalidParameter", f"instanceIds not in the scale set: {unknown or ids}")
    for iid in ids:
        res["_instances"][iid]["properties"]["provisioningState"] = "Deleting"
    res["sku"]["capacity"] = max(0, res["sku"]["capacity"] - len(ids))

    def done() -> None:
        for iid in ids:
            res["_instances"].pop(iid, None)

    return Reply(202, None, arm.begin(NS, f"{rid}/virtualMachines/{ids[0]}", res["location"], done))


def _scale_to(arm: ArmEmulator, res: dict[str, Any], capacity: int) -> None:
    live = {k: vm for k, vm in res["_instances"].items() if vm["properties"]["provisioningState"] != "Deleting"}
    while len(live) < capacity:
        vm = _new_instance(arm, res)
        live[vm["instanceId"]] = vm
    victims = sorted((vm for vm in live.values()
                      if not vm["properties"]["protectionPolicy"]["protectFromScaleIn"]),
                     key=lambda vm: int(vm["instanceId"]), reverse=True)[: max(0, len(live) - capacity)]
    for vm in victims:
        vm["properties"]["provisioningState"] = "Deleting"


def _new_instance(arm: ArmEmulator, res: dict[str, Any]) -> dict[str, Any]:
    iid = str(res["_next"])
    res["_next"] += 1
    os_profile = res["properties"]["virtualMachineProfile"]["osProfile"]
    vm_id = f"{res['id']}/virtualMachines/{iid}"
    vm = {
        "id": vm_id, "name": f"{res['name']}_{iid}", "instanceId": iid, "location": res["location"],
        "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
        "sku": {"name": res["sku"]["name"], "tier": res["sku"].get("tier", "Standard")},
        "properties": {
            "provisioningState": "Creating", "latestModelApplied": True, "vmId": str(uuid.uuid4()),
            "osProfile": {"computerName": os_profile["computerNamePrefix"] + base36(int(iid)),
                          "adminUsername": os_profile.get("adminUsername")},
            "protectionPolicy": {"protectFromScaleIn": False, "protectFromScaleSetActions": False},
            "networkProfile": {"networkInterfaces": [{"id": f"{vm_id}/networkInterfaces/nic0"}]},
        },
        "_ip": arm.allocate_ip(),
    }
    res["_instances"][iid] = vm
    return vm


def _settle_vmss(arm: ArmEmulator, res: dict[str, Any]) -> None:
    for iid, vm in list(res["_instances"].items()):
        if vm["properties"]["provisioningState"] == "Deleting":
            del res["_instances"][iid]
        else:
            vm["properties"]["provisioningState"] = "Succeeded"
    res["properties"]["provisioningState"] = "Succeeded"


def _public(res: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in res.items() if not k.startswith("_")}


def _vm_view(vm: dict[str, Any], expand: bool) -> dict[str, Any]:
    out = _public(vm)
    if expand:
        state = vm["properties"]["provisioningState"]
        statuses = [{"code": f"ProvisioningState/{state.lower()}", "level": "Info",
                     "displayStatus": f"Provisioning {state.lower()}"}]
        if state == "Succeeded":
            statuses.append({"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"})
        elif state == "Creating":
            statuses.append({"code": "PowerState/starting", "level": "Info", "displayStatus": "VM starting"})
        out["properties"]["instanceView"] = {"computerName": vm["properties"]["osProfile"]["computerName"],
                                             "statuses": statuses}
    return out


def list_vmss_vms(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = _rid(request).rsplit("/", 1)[0]
    arm.observe(rid)
    res = arm.get(rid)
    expand = request.query.get("$expand", "").lower() == "instanceview"
    vms = sorted(res["_instances"].values(), key=lambda vm: int(vm["instanceId"]))
    return Reply(200, {"value": [_vm_view(vm, expand) for vm in vms]})


def _instance(arm: ArmEmulator, m: re.Match[str], request: Request) -> dict[str, Any]:
    rid = _rid(request).rsplit("/", 2)[0]
    vm = arm.get(rid)["_instances"].get(m["iid"])
    if vm is None:
        raise ArmError(404, "NotFound", f"instance {m['iid']} not found")
    return vm


def get_vmss_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    arm.observe(_rid(request))
    return Reply(200, _vm_view(_instance(arm, m, request), request.query.get("$expand") == "instanceView"))


def put_vmss_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    vm = _instance(arm, m, request)
    policy = (_body(request).get("properties") or {}).get("protectionPolicy")
    if policy is not None:
        vm["properties"]["protectionPolicy"].update(policy)
    return Reply(200, _vm_view(vm, False))


# -- single VMs and disks (file servers) --------------------------------------------------------
def put_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = _rid(request), _body(request)
    props = body.get("properties") or {}
    for nic in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
        nic_res = arm.get(nic["id"])
        if nic_res["properties"].get("virtualMachine"):
            raise ArmError(400, "NicInUse", f"network interface {nic['id']} is attached to another VM")
    for disk in (props.get("storageProfile") or {}).get("dataDisks") or []:
        disk_res = arm.get(disk["managedDisk"]["id"])
        if disk.get("createOption") != "Attach" or disk_res.get("managedBy"):
            raise ArmError(409, "OperationNotAllowed", f"disk {disk['managedDisk']['id']} cannot be attached")
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type="Microsoft.Compute/virtualMachines")
    res["properties"]["provisioningState"] = "Creating"
    res["properties"]["vmId"] = str(uuid.uuid4())
    res["properties"].get("osProfile", {}).pop("customData", None)
    arm.resources[rid.lower()] = res
    for nic in props["networkProfile"]["networkInterfaces"]:
        arm.get(nic["id"])["properties"]["virtualMachine"] = {"id": rid}
    for disk in props["storageProfile"].get("dataDisks") or []:
        disk_res = arm.get(disk["managedDisk"]["id"])
        disk_res["managedBy"] = rid
        disk_res["properties"]["diskState"] = "Attached"

    def done() -> None:
        res["properties"]["provisioningState"] = "Succeeded"

    return Reply(201, _public(res), arm.begin(NS, rid, res["location"], done))


def get_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = _rid(request)
    arm.observe(rid)
    return Reply(200, _public(arm.get(rid)))


def delete_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = _rid(request)
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    res["properties"]["provisioningState"] = "Deleting"

    def done() -> None:
        props = arm.resources.pop(rid.lower())["properties"]
        for nic in props["networkProfile"]["networkInterfaces"]:
            if nic["id"].lower() in arm.resources:
                arm.resources[nic["id"].lower()]["properties"].pop("virtualMachine", None)
        for disk in props["storageProfile"].get("dataDisks") or []:
            disk_res = arm.resources.get(disk["managedDisk"]["id"].lower())
            if disk_res is not None:
                disk_res.pop("managedBy", None)
                disk_res["properties"]["diskState"] = "Unattached"

    return Reply(202, None, arm.begin(NS, rid, res["location"], done))


def put_disk(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = _rid(request), _body(request)
    props = body.get("properties") or {}
    if (props.get("creationData") or {}).get("createOption") != "Empty" or not props.get("diskSizeGB"):
        raise ArmError(400, "InvalidParameter", "an empty disk needs creationData.createOption Empty and diskSizeGB")
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type="Microsoft.Compute/disks")
    res["properties"].update(provisioningState="Updating", diskState="Unattached")
    arm.resources[rid.lower()] = res

    def done() -> None:
        res["properties"]["provisioningState"] = "Succeeded"

    return Reply(202, None, arm.begin(NS, rid, res["location"], done))


def get_disk(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = _rid(request)
    arm.observe(rid)
    return Reply(200, _public(arm.get(rid)))


def delete_disk(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = _rid(request)
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    if res.get("managedBy"):
        raise ArmError(409, "OperationNotAllowed", f"Disk {m['name']} is attached to VM {res['managedBy']}.")
    res["properties"]["provisioningState"] = "Deleting"
    return Reply(202, None, arm.begin(NS, rid, res["location"], lambda: arm.resources.pop(rid.lower(), None)))
