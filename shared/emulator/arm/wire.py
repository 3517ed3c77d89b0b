"""ARM's wire vocabulary inside the emulator: a recorded request, a reply, an ARM error
(`{"error": {"code", "message"}}`), a long-running operation that advances when observed, and the
api-versions served per resource provider (what the installed SDK clients send)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0
    response: Any = None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.reply = Reply(status, {"error": {"code": code, "message": message}})


@dataclass
class Operation:
    id: str
    namespace: str  # Microsoft.Compute | Microsoft.Network | Microsoft.ContainerInstance
    resource_id: str  # lower-case id of the resource it acts on
    remaining: int
    complete: Callable[[], None]
    status: str = "InProgress"

    def observe(self) -> str:
        if self.status == "InProgress":
            if self.remaining > 0:
                self.remaining -= 1
            else:
                self.complete()
                self.status = "Succeeded"
        return self.status


COMPUTE_VERSIONS = frozenset({"2026-04-01"})
DISK_VERSIONS = frozenset({"2026-03-02"})
NETWORK_VERSIONS = frozenset({"2026-03-01"})
VMSS_NIC_VERSIONS = frozenset({"2018-10-01"})  # network interfaces of scale set VMs: an older API
ACI_VERSIONS = frozenset({"2023-05-01"})
API_VERSIONS = {"microsoft.compute": "2026-04-01", "microsoft.network": "2026-03-01",
                "microsoft.containerinstance": "2023-05-01"}


def id_parts(resource_id: str) -> tuple[str, str]:
    """(subscription id, resource group) of an ARM id."""
    parts = resource_id.strip("/").split("/")
    lower = [p.lower() for p in parts]
    return parts[lower.index("subscriptions") + 1], parts[lower.index("resourcegroups") + 1]
