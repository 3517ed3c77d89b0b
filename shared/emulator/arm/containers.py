"""What runs a container group: the `ContainerGroupBackend` port, the group as the backend sees it
(secure values included), and the default backend, `ScriptedContainerGroups`.

The emulator starts a group when its creation completes (provisioningState Succeeded: its
containers were started), reads the group's state and logs whenever a client asks, and deletes it
when its deletion completes. A backend that cannot start a group leaves it Failed, with the
reason as an event, as ACI reports a group it could not deploy.

`ScriptedContainerGroups` runs nothing: a group runs (Running) and then terminates with the exit
code and logs set in `arm.aci_outcomes[group name]` (default: 0 and a line naming the command),
advancing like any operation of the emulator: when observed, after `arm.lro_steps` observations.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shared.emulator.arm.wire import Operation, id_parts

if TYPE_CHECKING:
    from shared.emulator.arm.server import ArmEmulator

STAMP = "2026-01-01T00:00:00Z"  # the scripted groups' start and finish time


@dataclass(frozen=True)
class VolumeMount:
    volume: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    secure_environment: Mapping[str, str] = field(default_factory=dict)
    volume_mounts: tuple[VolumeMount, ...] = ()


@dataclass(frozen=True)
class Volume:
    name: str
    kind: str  # "azureFile" | "emptyDir" | "secret" | "gitRepo"
    account_name: str = ""  # azureFile
    share_name: str = ""  # azureFile
    read_only: bool = False


@dataclass(frozen=True)
class ContainerGroup:
    resource_id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    restart_policy: str
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerState:
    state: str  # "Waiting" | "Running" | "Terminated"
    exit_code: int | None = None
    start_time: str = ""  # ISO 8601, UTC
    finish_time: str = ""
    detail_status: str = ""


@runtime_checkable
class ContainerGroupBackend(Protocol):
    def start(self, group: ContainerGroup) -> None:
        """Start the group's containers (its creation completes). Idempotent."""

    def state(self, group: ContainerGroup) -> ContainerState:
        """The state of the group's containers."""

    def logs(self, group: ContainerGroup) -> str:
        """What the group's container wrote to stdout and stderr so far."""

    def delete(self, group: ContainerGroup) -> None:
        """Stop and remove the group's containers (its deletion completes). Idempotent."""


def group_of(res: Mapping[str, Any]) -> ContainerGroup:
    """The group a stored container group resource describes (secure values included)."""
    props = res["properties"]
    containers = []
    for container in props["containers"]:
        spec = container["properties"]
        env = spec.get("environmentVariables") or []
        containers.append(Container(
            name=container["name"], image=spec["image"], command=tuple(spec.get("command") or ()),
            environment={e["name"]: e.get("value") or "" for e in env if "secureValue" not in e},
            secure_environment={e["name"]: e["secureValue"] for e in env if "secureValue" in e},
            volume_mounts=tuple(VolumeMount(v["name"], v["mountPath"], bool(v.get("readOnly")))
                                for v in spec.get("volumeMounts") or [])))
    volumes = []
    for volume in props.get("volumes") or []:
        share = volume.get("azureFile") or {}
        kind = next((k for k in ("azureFile", "emptyDir", "secret", "gitRepo") if k in volume), "unknown")
        volumes.append(Volume(volume["name"], kind, share.get("storageAccountName", ""), share.get("shareName", ""),
                              bool(share.get("readOnly"))))
    subscription, group = id_parts(res["id"])
    return ContainerGroup(resource_id=res["id"], name=res["name"], subscription_id=subscription,
                          resource_group=group, location=res["location"],
                          restart_policy=props.get("restartPolicy") or "Always", containers=tuple(containers),
                          volumes=tuple(volumes), tags=dict(res.get("tags") or {}))


class ScriptedContainerGroups:
    """Groups that run nothing and end as `arm.aci_outcomes` says, after `arm.lro_steps` observations."""

    def __init__(self, arm: ArmEmulator) -> None:
        self._arm = arm
        self._runs: dict[str, Operation] = {}  # lower-case group id -> its run

    def start(self, group: ContainerGroup) -> None:
        key = group.resource_id.lower()
        if key not in self._runs:
            run = Operation(f"run-{uuid.uuid4().hex}", "Microsoft.ContainerInstance", key, self._arm.lro_steps,
                            lambda: None)
            self._runs[key] = self._arm.add_operation(run)

    def state(self, group: ContainerGroup) -> ContainerState:
        run = self._runs.get(group.resource_id.lower())
        if run is None:
            return ContainerState("Waiting")
        if run.status != "Succeeded":
            return ContainerState("Running", start_time=STAMP)
        exit_code = self._outcome(group)[0]
        return ContainerState("Terminated", exit_code, STAMP, STAMP, "Completed" if exit_code == 0 else "Error")

    def logs(self, group: ContainerGroup) -> str:
        return self._outcome(group)[1] if self.state(group).state == "Terminated" else ""

    def delete(self, group: ContainerGroup) -> None:
        run = self._runs.pop(group.resource_id.lower(), None)
        if run is not None and run.status == "InProgress":
            run.status = "Canceled"

    def _outcome(self, group: ContainerGroup) -> tuple[int, str]:
        default = (0, f"ran: {shlex.join(group.containers[0].command)}\n")
        return self._arm.aci_outcomes.get(group.name.lower(), default)
