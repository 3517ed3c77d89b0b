"""What stands behind the emulator's virtual machines: the records ARM keeps of them and the port
(`InstanceBackend`) through which the emulator asks for real machines to be booted, observed,
evicted and removed.

The emulator calls the backend while it holds its lock, in the order ARM causes the effects:
`create` when an instance is added (Creating), `delete` when its deletion completes, `power_state`
whenever a client reads an instance view, `evict` when a Spot instance is evicted. So a backend
call must not wait for another thread that calls into the emulator (`evict` hands the removal
back as a callable to call later, from any thread). `RecordsOnly` (the default) boots nothing:
every VM runs as soon as it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

POWER_STATES = ("starting", "running", "stopped")


@dataclass(frozen=True)
class Identity:
    kind: str  # "system" | "user"
    # What Azure puts in a token's xms_mirid: for a scale set's system identity
    # /subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{ss}
    # (lower-case "resourcegroups", as Azure writes it); for a user-assigned identity its ARM id.
    resource_id: str
    principal_id: str
    client_id: str
    tenant_id: str


@dataclass(frozen=True)
class AdminAccount:
    """What Azure's provisioning makes of a VM's osProfile: its admin user, with the public keys that
    may log in as it and its password (empty: key login only)."""
    name: str
    ssh_public_keys: tuple[str, ...] = ()
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class VmRecord:
    resource_id: str
    name: str
    computer_name: str
    vm_id: str
    private_ip: str
    vm_size: str
    priority: str  # "Regular" | "Spot"
    location: str
    subscription_id: str
    resource_group: str
    scale_set: str  # "" for a single VM
    identities: tuple[Identity, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    admin: AdminAccount | None = None  # None: the VM's osProfile names no admin user


@runtime_checkable
class InstanceBackend(Protocol):
    def create(self, vm: VmRecord, custom_data: bytes) -> None:
        """The instance was added (Creating): boot it from `custom_data` (decoded). Idempotent."""

    def delete(self, vm: VmRecord) -> None:
        """Its deletion completed: remove it. Idempotent."""

    def power_state(self, vm: VmRecord) -> str:
        """"starting" | "running" | "stopped"."""

    def evict(self, vm: VmRecord, delete: Callable[[], None]) -> None:
        """Spot eviction: give the notice, then call `delete` (the emulator's own removal of the
        instance, eviction policy Delete) when the notice ends or is acknowledged."""


class RecordsOnly:
    """No machines: every VM runs as soon as it exists, and an eviction deletes at once."""

    def create(self, vm: VmRecord, custom_data: bytes) -> None:
        return

    def delete(self, vm: VmRecord) -> None:
        return

    def power_state(self, vm: VmRecord) -> str:
        return "running"

    def evict(self, vm: VmRecord, delete: Callable[[], None]) -> None:
        delete()


def user_identity(resource_id: str, tenant_id: str) -> Identity:
    """A user-assigned identity; its ids are derived from its ARM id, so they are stable across restarts."""
    key = resource_id.rstrip("/").lower()
    return Identity("user", resource_id.rstrip("/"), str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
                    str(uuid.uuid5(uuid.NAMESPACE_URL, key + "#clientId")), tenant_id)


def mirid(resource_id: str) -> str:
    """A resource's id as tokens carry it in xms_mirid ("resourcegroups" in lower case)."""
    parts = resource_id.rstrip("/").split("/")
    return "/".join("resourcegroups" if p.lower() == "resourcegroups" else p for p in parts)
