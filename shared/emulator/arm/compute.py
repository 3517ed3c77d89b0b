"""Microsoft.Compute scale sets in the ARM emulator: VM scale sets, their VMs, Spot eviction.

Scale set instances follow Azure's uniform model: instance ids count up from 0, the computer
name is the prefix plus the instance id in base 36 on 6 characters, a capacity increase adds
instances (Creating until the operation completes), a decrease removes the highest unprotected
instance ids, deleteInstances removes exactly the named ones and lowers the capacity.

Each added instance is handed to the instance backend (`create`, with the scale set's custom
data decoded; GET never returns customData nor adminPassword), each removed one when its removal completes
(`delete`). A backend that cannot create an instance leaves it Failed, with the reason in its
instance view, as Azure reports a VM that failed to provision. The power state in an instance
view is the backend's. `simulateEviction` evicts a Spot instance through the backend, which
calls back to delete it (eviction policy Delete: the capacity drops by one).
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import TYPE_CHECKING, Any

from shared.emulator.arm import records
from shared.emulator.arm.backend import POWER_STATES
from shared.emulator.arm.wire import COMPUTE_VERSIONS, ArmError, Reply, Request

if TYPE_CHECKING:
    from shared.emulator.arm.server import ArmEmulator

RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute"
VMSS = RG + r"/virtualMachineScaleSets/(?P<name>[^/]+)"
VMSS_VM = VMSS + r"/virtualMachines/(?P<iid>[^/]+)"
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
    arm.route("GET", VMSS_VM, get_vmss_vm, v)
    arm.route("PUT", VMSS_VM, put_vmss_vm, v)
    arm.route("POST", VMSS_VM + r"/simulateEviction", simulate_eviction, v)


def rid_of(request: Request) -> str:
    return request.path.rstrip("/")


def body_of(request: Request) -> dict[str, Any]:
    if not isinstance(request.body, dict):
        raise ArmError(400, "InvalidRequestContent", "the request body must be a JSON object")
    return request.body


def _vmss_id(m: re.Match[str]) -> str:
    return f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}/providers/Microsoft.Compute/" \
           f"virtualMachineScaleSets/{m['name']}"


# -- scale sets -------------------------------------------------------------------------------
def put_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = rid_of(request), body_of(request)
    if rid.lower() in arm.resources:
        raise ArmError(409, "OperationNotAllowed", "replacing an existing scale set is not emulated")
    profile = (body.get("properties") or {}).get("virtualMachineProfile") or {}
    if not body.get("location") or not (body.get("sku") or {}).get("name"):
        raise ArmError(400, "InvalidParameter", "location and sku.name are required")
    if not (profile.get("osProfile") or {}).get("computerNamePrefix"):
        raise ArmError(400, "InvalidParameter", "osProfile.computerNamePrefix is required")
    arm.check_size(body["sku"]["name"], body["location"])
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type=records.VMSS_TYPE)
    records.assign_identity(arm, res, body.get("identity"))
    res["_custom_data"] = records.custom_data(profile["osProfile"])
    res["properties"]["provisioningState"] = "Creating"
    res["properties"]["uniqueId"] = str(uuid.uuid4())
    res["_admin_password"] = res["properties"]["virtualMachineProfile"]["osProfile"].pop("adminPassword", "")
    res["properties"]["virtualMachineProfile"]["osProfile"].pop("customData", None)  # never returned by GET
    res["_instances"] = {}
    res["_next"] = 0
    arm.resources[rid.lower()] = res
    _scale_to(arm, res, int(body["sku"].get("capacity", 0)))
    headers = arm.begin(NS, rid, res["location"], lambda: _settle_vmss(arm, res))
    return Reply(201, public(res), headers)


def get_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = rid_of(request)
    arm.observe(rid)
    return Reply(200, public(arm.get(rid)))


def list_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    prefix = rid_of(request).lower() + "/"
    found = [rid for rid, res in arm.resources.items() if rid.startswith(prefix) and res["type"] == records.VMSS_TYPE]
    for rid in found:
        arm.observe(rid)
    return Reply(200, {"value": [public(arm.resources[rid]) for rid in found if rid in arm.resources]})


def patch_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid, body = rid_of(request), body_of(request)
    res = arm.get(rid)
    if res["properties"]["provisioningState"] == "Deleting":
        raise ArmError(409, "OperationNotAllowed", "the scale set is being deleted")
    size = (body.get("sku") or {}).get("name")
    if size:
        arm.check_size(size, res["location"])
        res["sku"]["name"] = size  # the model: instances added from now on get it
    capacity = (body.get("sku") or {}).get("capacity")
    if capacity is not None:
        res["sku"]["capacity"] = int(capacity)
        _scale_to(arm, res, int(capacity))
    res["properties"]["provisioningState"] = "Updating"
    headers = arm.begin(NS, rid, res["location"], lambda: _settle_vmss(arm, res))
    return Reply(200, public(res), headers)


def delete_vmss(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = rid_of(request)
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    res["properties"]["provisioningState"] = "Deleting"
    for vm in res["_instances"].values():
        vm["properties"]["provisioningState"] = "Deleting"

    def done() -> None:
        for iid in sorted(res["_instances"], key=int):
            _remove(arm, res, iid)
        arm.resources.pop(rid.lower(), None)

    return Reply(202, None, arm.begin(NS, rid, res["location"], done))


def delete_instances(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = rid_of(request).rsplit("/", 1)[0]
    res = arm.get(rid)
    ids = [str(i) for i in (body_of(request).get("instanceIds") or [])]
    unknown = [i for i in ids if i not in res["_instances"]]
    if not ids or unknown:
        raise ArmError(400, "InvalidParameter", f"instanceIds not in the scale set: {unknown or ids}")
    for iid in ids:
        res["_instances"][iid]["properties"]["provisioningState"] = "Deleting"
    res["sku"]["capacity"] = max(0, res["sku"]["capacity"] - len(ids))

    def done() -> None:
        for iid in ids:
            _remove(arm, res, iid)

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
    try:
        arm.backend.create(records.scale_set_vm(arm, res, vm), res["_custom_data"])
    except Exception as err:  # the VM failed to provision: Azure records it on the instance
        vm["properties"]["provisioningState"] = "Failed"
        vm["_error"] = f"{type(err).__name__}: {err}"
    return vm


def _remove(arm: ArmEmulator, res: dict[str, Any], iid: str) -> None:
    """The instance's removal completes: the backend removes its machine first (a failure raises: retried)."""
    vm = res["_instances"].get(iid)
    if vm is not None:
        arm.backend.delete(records.scale_set_vm(arm, res, vm))
        del res["_instances"][iid]


def _settle_vmss(arm: ArmEmulator, res: dict[str, Any]) -> None:
    for iid, vm in list(res["_instances"].items()):
        if vm["properties"]["provisioningState"] == "Deleting":
            _remove(arm, res, iid)
        elif vm["properties"]["provisioningState"] != "Failed":
            vm["properties"]["provisioningState"] = "Succeeded"
    res["properties"]["provisioningState"] = "Succeeded"


def public(res: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in res.items() if not k.startswith("_")}


# -- scale set VMs ----------------------------------------------------------------------------------
def instance_view(arm: ArmEmulator, res: dict[str, Any], vm: dict[str, Any]) -> dict[str, Any]:
    state = vm["properties"]["provisioningState"]
    power = "deallocated" if vm.get("_deallocated") else arm.backend.power_state(records.scale_set_vm(arm, res, vm))
    return {"computerName": vm["properties"]["osProfile"]["computerName"],
            "statuses": statuses(state, vm.get("_error", ""), power)}


def statuses(provisioning: str, error: str, power: str) -> list[dict[str, str]]:
    """A VM's instance view statuses: its provisioning state (with the error when it failed) and power state."""
    if provisioning == "Failed":
        first = {"code": "ProvisioningState/failed/InternalOperationError", "level": "Error",
                 "displayStatus": "Provisioning failed", "message": error}
    else:
        first = {"code": f"ProvisioningState/{provisioning.lower()}", "level": "Info",
                 "displayStatus": f"Provisioning {provisioning.lower()}"}
    if power not in (*POWER_STATES, "deallocated"):
        raise ValueError(f"the instance backend reported power state {power!r}")
    if provisioning == "Creating" and power == "running":
        power = "starting"  # a VM still provisioning is starting, whatever its guest does
    return [first, {"code": f"PowerState/{power}", "level": "Info", "displayStatus": f"VM {power}"}]


def _vm_view(arm: ArmEmulator, res: dict[str, Any], vm: dict[str, Any], expand: bool) -> dict[str, Any]:
    out = public(vm)
    if expand:
        out["properties"]["instanceView"] = instance_view(arm, res, vm)
    return out


def list_vmss_vms(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = rid_of(request).rsplit("/", 1)[0]
    arm.observe(rid)
    res = arm.get(rid)
    expand = request.query.get("$expand", "").lower() == "instanceview"
    vms = sorted(res["_instances"].values(), key=lambda vm: int(vm["instanceId"]))
    return Reply(200, {"value": [_vm_view(arm, res, vm, expand) for vm in vms]})


def _instance(arm: ArmEmulator, m: re.Match[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    res = arm.get(_vmss_id(m))
    vm = res["_instances"].get(m["iid"])
    if vm is None:
        raise ArmError(404, "NotFound", f"instance {m['iid']} not found")
    return res, vm


def get_vmss_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    arm.observe(rid_of(request))
    res, vm = _instance(arm, m)
    return Reply(200, _vm_view(arm, res, vm, request.query.get("$expand", "").lower() == "instanceview"))


def put_vmss_vm(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    res, vm = _instance(arm, m)
    policy = (body_of(request).get("properties") or {}).get("protectionPolicy")
    if policy is not None:
        vm["properties"]["protectionPolicy"].update(policy)
    return Reply(200, _vm_view(arm, res, vm, False))


def simulate_eviction(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    res, vm = _instance(arm, m)
    profile = res["properties"]["virtualMachineProfile"]
    if not records.spot(profile.get("priority")):
        raise ArmError(409, "OperationNotAllowed", f"Operation 'simulateEviction' is not allowed on VM "
                                                   f"'{vm['name']}' since it is not a Spot VM.")
    if vm["properties"]["provisioningState"] == "Deleting" or vm.get("_deallocated"):
        raise ArmError(409, "OperationNotAllowed", f"Operation 'simulateEviction' is not allowed on VM "
                                                   f"'{vm['name']}' since it is being deleted or deallocated.")
    rid, iid, vm_id = _vmss_id(m).lower(), m["iid"], vm["properties"]["vmId"]

    def evicted() -> None:
        with arm.lock:
            current = arm.resources.get(rid)
            target = current["_instances"].get(iid) if current is not None else None
            if current is None or target is None or target["properties"]["vmId"] != vm_id:
                return  # gone already
            if (profile.get("evictionPolicy") or "Deallocate").lower() == "delete":
                if target["properties"]["provisioningState"] != "Deleting":  # else its capacity is gone already
                    current["sku"]["capacity"] = max(0, int(current["sku"]["capacity"]) - 1)
                _remove(arm, current, iid)
            else:  # Deallocate: the VM stays, stopped and without a machine
                arm.backend.delete(records.scale_set_vm(arm, current, target))
                target["_deallocated"] = True

    arm.backend.evict(records.scale_set_vm(arm, res, vm), evicted)
    return Reply(204)
