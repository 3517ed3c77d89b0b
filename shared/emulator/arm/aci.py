"""Microsoft.ContainerInstance in the ARM emulator: container groups that run once, and their logs.

A group is provisioned (Pending -> Succeeded) like any operation here; when its creation
completes, the container group backend starts it (see `containers.py`), and from then on the
instance view of its containers (Running, then Terminated with an exit code) and its logs are the
backend's. Like Azure, GET never returns secure environment values nor storage account keys.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from shared.emulator.arm.containers import ContainerState, group_of
from shared.emulator.arm.wire import ACI_VERSIONS, ArmError, Reply, Request

if TYPE_CHECKING:
    from shared.emulator.arm.server import ArmEmulator

GROUPS = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ContainerInstance"
          r"/containerGroups")
GROUP = GROUPS + r"/(?P<name>[^/]+)"
NS = "Microsoft.ContainerInstance"


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
        raise ArmError(409, "ContainerGroupExists", "updating a container group is not emulated")
    res = copy.deepcopy(body)
    res.update(id=rid, name=m["name"], type="Microsoft.ContainerInstance/containerGroups")
    res["properties"]["provisioningState"] = "Pending"
    res["properties"]["instanceView"] = {"state": "Pending", "events": []}
    arm.resources[rid.lower()] = res

    def provisioned() -> None:
        try:
            arm.container_groups.start(group_of(res))
        except Exception as err:  # the group could not be deployed: ACI records it on the group
            res["properties"]["provisioningState"] = "Failed"
            res["properties"]["instanceView"] = {"state": "Failed", "events": [
                {"count": 1, "name": "Failed", "type": "Warning", "message": f"{type(err).__name__}: {err}"}]}
            return
        res["properties"]["provisioningState"] = "Succeeded"
        res["_started"] = True

    return Reply(201, _public(arm, res), arm.begin(NS, rid, res["location"], provisioned))


def _current(state: ContainerState) -> dict[str, Any]:
    current: dict[str, Any] = {"state": state.state, "detailStatus": state.detail_status}
    if state.start_time:
        current["startTime"] = state.start_time
    if state.state == "Terminated":
        current.update(finishTime=state.finish_time or state.start_time, exitCode=state.exit_code)
    return current


def _public(arm: ArmEmulator, res: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in res.items() if not k.startswith("_")}
    if res.get("_started"):
        state = arm.container_groups.state(group_of(res))
        for container in out["properties"]["containers"]:
            container["properties"]["instanceView"] = {"restartCount": 0, "currentState": _current(state),
                                                       "events": []}
        out["properties"]["instanceView"]["state"] = {
            "Terminated": "Succeeded" if state.exit_code == 0 else "Failed", "Waiting": "Pending",
        }.get(state.state, "Running")
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
    return Reply(200, {"value": [_public(arm, arm.resources[rid]) for rid in found if rid in arm.resources]})


def get_group(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    arm.observe(rid)
    return Reply(200, _public(arm, arm.get(rid)))


def delete_group(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    rid = request.path.rstrip("/")
    res = arm.resources.get(rid.lower())
    if res is None:
        return Reply(204)
    for op in arm.operations.values():  # deleting a group ends whatever runs in it
        if op.resource_id == rid.lower() and op.status == "InProgress":
            op.status = "Canceled"

    def deleted() -> None:
        arm.container_groups.delete(group_of(res))  # a failure raises: the next observation retries
        arm.resources.pop(rid.lower(), None)

    return Reply(202, None, arm.begin(NS, rid, res["location"], deleted))


def get_logs(arm: ArmEmulator, request: Request, m: re.Match[str]) -> Reply:
    group_id = request.path.rstrip("/").rsplit("/containers/", 1)[0]
    res = arm.get(group_id)
    if m["container"] not in {c["name"] for c in res["properties"]["containers"]}:
        raise ArmError(404, "ContainerNotFound", f"container {m['container']} not found")
    content = arm.container_groups.logs(group_of(res)) if res.get("_started") else ""
    tail = request.query.get("tail")
    if tail and content:
        content = "".join(content.splitlines(keepends=True)[-int(tail):])
    return Reply(200, {"content": content})
