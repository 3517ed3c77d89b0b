"""The local ARM compute emulator: Microsoft.Compute, Microsoft.Network and Microsoft.ContainerInstance
as the real SDK clients speak them, over https."""

from shared.emulator.arm.server import ArmEmulator, Reply, Request

__all__ = ["ArmEmulator", "Reply", "Request"]
