"""Microsoft.Compute single VMs and managed disks in the ARM emulator (what file servers are made of).

A VM attaches its network interfaces and data disks (a NIC or disk in use elsewhere is refused,
as in Azure); its private IP is its NIC's. Like scale set instances, a VM is handed to the
instance backend when it is created (with its custom data, decoded) and when its deletion
completes, and its instance view reports the backend's power state.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import TYPE_CHECKING, Any

from shared.emulator.arm import records
from shared.emulator.arm.compute import NS, RG, body_of, public, rid_of, statuses
from shared.emulator.arm.wire import COMPUTE_VERSIONS, DISK_VERSIONS, ArmError, Reply, Request

if TYPE_CHECKING:
    from shared.emulator.arm.server import ArmEmulator


def register(arm: ArmEmulator) -> None:
    arm.route("PUT", RG + r"/virtualMachines/(?P<name>[^/]+)", put_vm, COMPUTE_VERSIONS)
    arm.route("GET", RG + r"/virtualMachines/(?P<name>[^/]+)", get_vm, COMPUTE_VERSIONS)
    arm.route("DELETE", RG + r"/virtualMachines/(?P<name>[^/]+)", delete_vm, COMPUTE_VERSIONS)
    arm.route("PUT", RG + r"/disks/(?P<name>[^/]+)", put_disk, DISK_VERSIONS)
    arm.route("GET", RG + r"/disks/(?P<name>[^/]+)", get_disk, DISK_VERSIONS)
    arm.route("DELETE", RG + r"/disks/(?P<name>[^/]+)", delete_disk, DISK_VERSIONS)


def put_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = rid_of(request), body_of(request)
    props = body.get("properties") or {}
    for nic in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
        nic_res = arm.get(nic["id"])
        if nic_res["properties"].get("virtualMachine"):
            raise ArmError(400, "NicInUse", f"network interface {nic['id']} is attached to another VM")
    for disk in (props.get("storageProfile") or {}).get("dataDisks") or []:
        disk_res = arm.get(disk["managedDisk"]["id"])
        if disk.get("createOption") != "Attach" or disk_res.get("managedBy"):
            raise ArmError(409, "OperationNotAllowed", f"disk {disk['managedDisk']['id']} cannot be attached")
    size = (props.get("hardwareProfile") or {}).get("vmSize")
    if not body.get("location") or not size or not (props.get("networkProfile") or {}).get("networkInterfaces"):
        raise ArmError(400, "InvalidParameter", "location, hardwareProfile.vmSize and a network interface are required")
    arm.check_size(size, body["location"])
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type=records.VM_TYPE)
    records.assign_identity(arm, res, body.get("identity"))
    custom_data = records.custom_data(props.get("osProfile") or {})
    res["properties"]["provisioningState"] = "Creating"
    res["properties"]["vmId"] = str(uuid.uuid4())
    res["properties"].get("osProfile", {}).pop("customData", None)  # never returned by GET
    arm.resources[rid.lower()] = res
    for nic in props["networkProfile"]["networkInterfaces"]:
        arm.get(nic["id"])["properties"]["virtualMachine"] = {"id": rid}
    for disk in props["storageProfile"].get("dataDisks") or []:
        disk_res = arm.get(disk["managedDisk"]["id"])
        disk_res["managedBy"] = rid
        disk_res["properties"]["diskState"] = "Attached"
    try:
        arm.backend.create(records.single_vm(arm, res), custom_data)
    except Exception as err:  # the VM failed to provision: Azure records it on the VM
        res["properties"]["provisioningState"] = "Failed"
        res["_error"] = f"{type(err).__name__}: {err}"

    def done() -> None:
        if res["properties"]["provisioningState"] != "Failed":
            res["properties"]["provisioningState"] = "Succeeded"

    return Reply(201, public(res), arm.begin(NS, rid, res["location"], done))


def get_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = rid_of(request)
    arm.observe(rid)
    res = arm.get(rid)
    out = public(res)
    if request.query.get("$expand", "").lower() == "instanceview":
        out["properties"]["instanceView"] = _instance_view(arm, res)
    return Reply(200, out)


def _instance_view(arm: ArmEmulator, res: dict[str, Any]) -> dict[str, Any]:
    state = res["properties"]["provisioningState"]
    return {"computerName": (res["properties"].get("osProfile") or {}).get("computerName", ""),
            "statuses": statuses(state, res.get("_error", ""), arm.backend.power_state(records.single_vm(arm, res)))}


def delete_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = rid_of(request)
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    res["properties"]["provisioningState"] = "Deleting"

    def done() -> None:
        arm.backend.delete(records.single_vm(arm, res))  # a failure raises: the next observation retries
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
    rid, body = rid_of(request), body_of(request)
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
    rid = rid_of(request)
    arm.observe(rid)
    return Reply(200, public(arm.get(rid)))


def delete_disk(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = rid_of(request)
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    if res.get("managedBy"):
        raise ArmError(409, "OperationNotAllowed", f"Disk {m['name']} is attached to VM {res['managedBy']}.")
    res["properties"]["provisioningState"] = "Deleting"
    return Reply(202, None, arm.begin(NS, rid, res["location"], lambda: arm.resources.pop(rid.lower(), None)))
