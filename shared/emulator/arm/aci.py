"""Microsoft.ContainerInstance in the ARM emulator: container groups that run once, and their logs.

A group is provisioned (Pending -> Succeeded), its containers run (Running), then terminate with
the exit code and logs a test set in `arm.aci_outcomes[group name]` (default: 0 and a line naming
the command). Like Azure, GET never returns secure environment values nor storage account keys.
"""

from __future__ import annotations

import copy
import re
import shlex
from typing import Any

from shared.emulator.arm.server import ACI_VERSIONS, ArmEmulator, ArmError, Operation, Reply, Request

GROUPS = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ContainerInstance"
          r"/containerGroups")
GROUP = GROUPS + r"/(?P<name>[^/]+)"
NS = "Microsoft.ContainerInstance"
STAMP = "2026-01-01T00:00:00Z"


def register(arm: ArmEmulator) -> None:
    arm.route("GET", GROUPS, list_groups, ACI_VERSIONS)
    arm.route("PUT", GROUP, put_group, ACI_VERSIONS)
    arm.route("GET", GROUP, get_group, ACI_VERSIONS)
    arm.route("DELETE", GROUP, delete_group, ACI_VERSIONS)
    arm.route("GET", GROUP + r"/containers/(?P<container>[^/]+)/logs", get_logs, ACI_VERSIONS)


def put_group(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    body = request.body if isinstance(request.body, dict) else {}
    props = body.get("properties") or {}
    if not body.get("location") or not props.get("containers") or props.get("osType") not in ("Linux", "Windows"):
        raise ArmError(400, "InvalidContainerGroup", "location, containers and osType are required")
    for container in props["containers"]:
        requests = ((container.get("properties") or {}).get("resources") or {}).get("requests") or {}
        if not requests.get("cpu") or not requests.get("memoryInGB"):
            raise ArmError(400, "InvalidContainerResources", f"container {container.get('name')} needs cpu and memory")
        if requests.get("gpu"):
            raise ArmError(400, "UnsupportedSku", "GPU resources are not available for container groups")
    names = {v["name"] for v in props.get("volumes") or []}
    for container in props["containers"]:
        for mount in container["properties"].get("volumeMounts") or []:
            if mount["name"] not in names:
                raise ArmError(400, "VolumeMountNotFound", f"volume {mount['name']} is not defined")
    if rid.lower() in arm.resources:
        raise ArmError(409, "ContainerGroupExists", "this emulator does not update container groups")
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type="Microsoft.ContainerInstance/containerGroups")
    res["properties"]["provisioningState"] = "Pending"
    res["properties"]["instanceView"] = {"state": "Pending", "events": []}
    arm.resources[rid.lower()] = res

    def provisioned() -> None:
        res["properties"]["provisioningState"] = "Succeeded"
        res["properties"]["instanceView"]["state"] = "Running"
        for container in res["properties"]["containers"]:
            container["properties"]["instanceView"] = {
                "restartCount": 0, "currentState": {"state": "Running", "startTime": STAMP, "detailStatus": ""}}
        run = Operation(f"run-{m['name']}", NS, rid.lower(), arm.lro_steps, lambda: _terminate(arm, res))
        arm.operations[run.id] = run

    return Reply(201, _public(res), arm.begin(NS, rid, res["location"], provisioned))


def _terminate(arm: ArmEmulator, res: dict[str, Any]) -> None:
    exit_code, _ = _outcome(arm, res)
    for container in res["properties"]["containers"]:
        container["properties"]["instanceView"]["currentState"] = {
            "state": "Terminated", "startTime": STAMP, "finishTime": STAMP, "exitCode": exit_code,
            "detailStatus": "Completed" if exit_code == 0 else "Error"}
    res["properties"]["instanceView"]["state"] = "Succeeded" if exit_code == 0 else "Failed"


def _outcome(arm: ArmEmulator, res: dict[str, Any]) -> tuple[int, str]:
    command = res["properties"]["containers"][0]["properties"].get("command") or []
    default = (0, f"ran: {shlex.join(command)}\n")
    return arm.aci_outcomes.get(res["name"].lower(), default)


def _public(res: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(res)
    for container in out["properties"]["containers"]:
        for env in container["properties"].get("environmentVariables") or []:
            env.pop("secureValue", None)
    for volume in out["properties"].get("volumes") or []:
        if volume.get("azureFile"):
            volume["azureFile"].pop("storageAccountKey", None)
    for cred in out["properties"].get("imageRegistryCredentials") or []:
        cred.pop("password", None)
    return out


def list_groups(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    prefix = request.path.rstrip("/").lower() + "/"
    found = [rid for rid in arm.resources if rid.startswith(prefix)]
    for rid in found:
        arm.observe(rid)
    return Reply(200, {"value": [_public(arm.resources[rid]) for rid in found if rid in arm.resources]})


def get_group(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    arm.observe(rid)
    return Reply(200, _public(arm.get(rid)))


def delete_group(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    for op in arm.operations.values():  # deleting a group ends whatever runs in it
        if op.resource_id == rid.lower():
            op.status = "Canceled"
    return Reply(202, None, arm.begin(NS, rid, res["location"], lambda: arm.resources.pop(rid.lower(), None)))


def get_logs(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    group_id = request.path.rstrip("/").rsplit("/containers/", 1)[0]
    res = arm.get(group_id)
    if m["container"] not in {c["name"] for c in res["properties"]["containers"]}:
        raise ArmError(404, "ContainerNotFound", f"container {m['container']} not found")
    state = (res["properties"]["containers"][0]["properties"].get("instanceView") or {}).get("currentState", {})
    content = _outcome(arm, res)[1] if state.get("state") == "Terminated" else ""
    tail = request.query.get("tail")
    if tail and content:
        content = "".join(content.splitlines(keepends=True)[-int(tail):])
    return Reply(200, {"content": content})
