"""The local ARM compute emulator: Microsoft.Compute, Microsoft.Network and Microsoft.ContainerInstance
as the real SDK clients speak them, over https, with pluggable backends for what VMs and container
groups really do."""

from shared.emulator.arm.backend import Identity, InstanceBackend, RecordsOnly, VmRecord
from shared.emulator.arm.containers import (
    ContainerGroup,
    ContainerGroupBackend,
    ContainerState,
    ScriptedContainerGroups,
)
from shared.emulator.arm.podman_groups import PodmanContainerGroups
from shared.emulator.arm.server import ArmEmulator
from shared.emulator.arm.sizes import SizeCatalogue, VmSize
from shared.emulator.arm.wire import Reply, Request

__all__ = ["ArmEmulator", "ContainerGroup", "ContainerGroupBackend", "ContainerState", "Identity", "InstanceBackend",
           "PodmanContainerGroups", "RecordsOnly", "Reply", "Request", "ScriptedContainerGroups", "SizeCatalogue",
           "VmRecord", "VmSize"]
