"""What ARM knows about each VM, as the rest of the emulated cloud needs it: managed identities as
Azure assigns and returns them, and the `VmRecord` of every scale set instance and single VM.

Identity types: "SystemAssigned", "UserAssigned", "SystemAssigned, UserAssigned" (Azure's
spelling; the space is optional on input) and "None". A system identity gets a fresh principal id
when its resource is created (GET returns principalId and tenantId; its client id is kept
internally, as Azure keeps it in Entra ID); each user-assigned identity reports its principalId
and clientId.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import TYPE_CHECKING, Any

from shared.emulator.arm.backend import AdminAccount, Identity, VmRecord, mirid, user_identity
from shared.emulator.arm.wire import ArmError, id_parts

if TYPE_CHECKING:
    from shared.emulator.arm.server import ArmEmulator

VMSS_TYPE = "Microsoft.Compute/virtualMachineScaleSets"
VM_TYPE = "Microsoft.Compute/virtualMachines"
_TYPES = {"none": "None", "systemassigned": "SystemAssigned", "userassigned": "UserAssigned",
          "systemassigned,userassigned": "SystemAssigned, UserAssigned"}
_USER_IDENTITY = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                            r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$", re.IGNORECASE)


def assign_identity(arm: ArmEmulator, res: dict[str, Any], requested: Any) -> None:
    """Give `res` the identity block a PUT asked for (principal ids filled in), or none."""
    if not requested:
        res.pop("identity", None)
        return
    kind = _TYPES.get(str(requested.get("type") or "").replace(" ", "").lower())
    if kind is None:
        raise ArmError(400, "InvalidParameter", f"The identity type '{requested.get('type')}' is not supported; "
                                                f"supported types: {', '.join(_TYPES.values())}.")
    users = requested.get("userAssignedIdentities") or {}
    if ("UserAssigned" in kind) != bool(users):
        raise ArmError(400, "InvalidParameter", "userAssignedIdentities must be given exactly when the identity "
                                                "type includes UserAssigned.")
    block: dict[str, Any] = {"type": kind}
    if "SystemAssigned" in kind:
        block.update(principalId=str(uuid.uuid4()), tenantId=arm.tenant_id)
        res["_system_client_id"] = str(uuid.uuid4())
    if users:
        block["userAssignedIdentities"] = {}
        for rid in users:
            if not _USER_IDENTITY.match(rid):
                raise ArmError(400, "InvalidParameter", f"'{rid}' is not a user-assigned identity resource id.")
            identity = user_identity(rid, arm.tenant_id)
            block["userAssignedIdentities"][rid] = {"principalId": identity.principal_id,
                                                    "clientId": identity.client_id}
    res["identity"] = block


def identities(arm: ArmEmulator, res: dict[str, Any]) -> tuple[Identity, ...]:
    block = res.get("identity") or {}
    found: list[Identity] = []
    if block.get("principalId"):
        found.append(Identity("system", mirid(res["id"]), block["principalId"], res["_system_client_id"],
                              block["tenantId"]))
    for rid, ids in (block.get("userAssignedIdentities") or {}).items():
        found.append(Identity("user", rid, ids["principalId"], ids["clientId"], arm.tenant_id))
    return tuple(found)


def custom_data(os_profile: dict[str, Any]) -> bytes:
    """osProfile.customData, decoded (Azure refuses what is not base64)."""
    encoded = os_profile.get("customData") or ""
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ArmError(400, "InvalidParameter", "Custom data in OSProfile must be in Base64 encoding and with a "
                                                "maximum length of 87380 characters.") from err


def spot(priority: str | None) -> bool:
    return (priority or "").lower() in ("spot", "low")


def scale_set_vm(arm: ArmEmulator, res: dict[str, Any], vm: dict[str, Any]) -> VmRecord:
    subscription, group = id_parts(res["id"])
    priority = res["properties"]["virtualMachineProfile"].get("priority")
    return VmRecord(
        resource_id=vm["id"], name=vm["name"], computer_name=vm["properties"]["osProfile"]["computerName"],
        vm_id=vm["properties"]["vmId"], private_ip=vm["_ip"], vm_size=vm["sku"]["name"],
        priority="Spot" if spot(priority) else "Regular", location=res["location"], subscription_id=subscription,
        resource_group=group, scale_set=res["name"], identities=identities(arm, res),
        tags=dict(res.get("tags") or {}),
        admin=admin_account(res["properties"]["virtualMachineProfile"].get("osProfile") or {},
                            res.get("_admin_password") or ""))


def admin_account(os_profile: dict[str, Any], password: str) -> AdminAccount | None:
    """The admin user an osProfile asks for: its name, its authorized keys, its password."""
    name = os_profile.get("adminUsername")
    if not name:
        return None
    ssh = ((os_profile.get("linuxConfiguration") or {}).get("ssh") or {}).get("publicKeys") or []
    return AdminAccount(str(name), tuple(str(k["keyData"]) for k in ssh if k.get("keyData")), password)


def single_vm(arm: ArmEmulator, res: dict[str, Any]) -> VmRecord:
    subscription, group = id_parts(res["id"])
    props = res["properties"]
    return VmRecord(
        resource_id=res["id"], name=res["name"], computer_name=(props.get("osProfile") or {}).get("computerName", ""),
        vm_id=props["vmId"], private_ip=_nic_ip(arm, props), vm_size=props["hardwareProfile"]["vmSize"],
        priority="Spot" if spot(props.get("priority")) else "Regular", location=res["location"],
        subscription_id=subscription, resource_group=group, scale_set="", identities=identities(arm, res),
        tags=dict(res.get("tags") or {}))


def _nic_ip(arm: ArmEmulator, props: dict[str, Any]) -> str:
    for ref in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
        nic = arm.resources.get(ref["id"].lower())
        for config in (nic or {}).get("properties", {}).get("ipConfigurations") or []:
            if config["properties"].get("privateIPAddress"):
                return str(config["properties"]["privateIPAddress"])
    return ""


def all_vms(arm: ArmEmulator) -> list[VmRecord]:
    found: list[VmRecord] = []
    for res in list(arm.resources.values()):
        if res["type"] == VMSS_TYPE:
            for vm in sorted(res["_instances"].values(), key=lambda vm: int(vm["instanceId"])):
                found.append(scale_set_vm(arm, res, vm))
        elif res["type"] == VM_TYPE:
            found.append(single_vm(arm, res))
    return found
