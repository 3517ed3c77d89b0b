"""The local cloud of the machine topology put together: the ARM emulator's instances are machines,
IMDS answers them, and a Spot eviction gives the Scheduled Events notice before the machine goes.

`MachineBackend` is the ARM emulator's `InstanceBackend`: an instance added to a scale set boots
a machine (its custom data as the NoCloud user data, its osProfile's admin user as vendor data), a
completed delete removes it, a killed machine reports its VM stopped. `LocalCloud` owns the running
parts (issuer server, ARM, IMDS) and what they need (network, image, machines), and the Key Vault, for
`python -m shared.emulator`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from shared.emulator.arm.backend import AdminAccount, VmRecord
from shared.emulator.arm.server import ArmEmulator
from shared.emulator.imds import Imds
from shared.emulator.issuer import Issuer, IssuerServer
from shared.emulator.keyvault import KeyVault
from shared.emulator.machines import Machines, MachineSpec
from shared.emulator.network import StackNetwork, machine_ips
from shared.localstack.tls import TlsFiles

log = logging.getLogger(__name__)

PREEMPT_NOTICE_S = 30.0  # Azure gives a Spot VM about 30 s between the Preempt event and eviction


def machine_name(stack_id: str, vm: VmRecord) -> str:
    return f"bai-{stack_id}-{vm.name}".lower().replace("_", "-")


class MachineBackend:
    """Scale-set instances as machines on the stack's network."""

    def __init__(self, machines: Machines, stack_id: str, imds: Imds | None = None,
                 notice_s: float = PREEMPT_NOTICE_S) -> None:
        self.machines = machines
        self.stack_id = stack_id
        self.imds = imds
        self.notice_s = notice_s

    def create(self, vm: VmRecord, custom_data: bytes) -> None:
        name = machine_name(self.stack_id, vm)
        self.machines.boot(MachineSpec(
            name=name, hostname=vm.computer_name, ip=vm.private_ip, user_data=custom_data, instance_id=vm.vm_id,
            labels={"batchai.stack": self.stack_id, "batchai.role": "machine", "batchai.vm": vm.resource_id.lower()},
            vendor_data=provisioning(vm.admin)))

    def delete(self, vm: VmRecord) -> None:
        self.machines.remove(machine_name(self.stack_id, vm))

    def power_state(self, vm: VmRecord) -> str:
        state = self.machines.state(machine_name(self.stack_id, vm))
        return "running" if state == "running" else "stopped"

    def evict(self, vm: VmRecord, delete: Callable[[], None]) -> None:
        """Post the Preempt event, then delete when the node acknowledges it or the notice ends."""
        if self.imds is None:
            delete()
            return
        not_before = datetime.now(UTC) + timedelta(seconds=self.notice_s)
        event_id = self.imds.post_event(vm, "Preempt", not_before)
        threading.Thread(target=self._evict_later, args=(event_id, not_before, delete), daemon=True,
                         name=f"evict-{vm.name}").start()

    def _evict_later(self, event_id: str, not_before: datetime, delete: Callable[[], None]) -> None:
        assert self.imds is not None
        stop = threading.Event()
        while datetime.now(UTC) < not_before and not self.imds.acknowledged(event_id):
            stop.wait(0.2)
        try:
            delete()
        except Exception:  # the emulator's own state: log it loudly, there is no caller to raise to
            log.exception("evicting failed")
            return
        self.imds.complete(event_id)


def provisioning(admin: AdminAccount | None) -> bytes:
    """The cloud-init vendor data that does what Azure's provisioning agent does with an osProfile: the
    admin user, with sudo, its authorized keys, and its password (password login only when there is one)."""
    if admin is None:
        return b""
    user: dict[str, object] = {"name": admin.name, "shell": "/bin/bash", "sudo": "ALL=(ALL) NOPASSWD:ALL",
                               "ssh_authorized_keys": list(admin.ssh_public_keys), "lock_passwd": not admin.password}
    if admin.password:
        user["plain_text_passwd"] = admin.password
    return ("#cloud-config\n" + yaml.safe_dump({"users": [user], "ssh_pwauth": bool(admin.password)})).encode()


def ip_allocator(network: StackNetwork, used: Callable[[], set[str]]) -> Callable[[], str]:
    """Addresses of the stack's subnet for new NICs, skipping those the emulator holds."""
    lock = threading.Lock()
    source: Iterator[str] = machine_ips(network)

    def allocate() -> str:
        nonlocal source
        with lock:
            taken = used()
            for _ in range(2):
                for ip in source:
                    if ip not in taken:
                        return ip
                source = machine_ips(network)  # wrapped around: addresses freed since are reused
            raise RuntimeError(f"no free address left in {network.subnet}")
    return allocate


@dataclass
class LocalCloud:
    """The running parts of the local cloud."""

    issuer: Issuer
    issuer_server: IssuerServer
    arm: ArmEmulator | None = None
    imds: Imds | None = None
    machines: Machines | None = None
    keyvault: KeyVault | None = None

    def stop(self, remove_machines: bool = True) -> None:
        for server in (self.keyvault, self.imds, self.arm, self.issuer_server):
            if server is not None:
                server.stop()
        if remove_machines and self.machines is not None:
            self.machines.remove_all()


def start_issuer(state_dir: Path, tls: TlsFiles, port: int, tenant_id: str) -> tuple[Issuer, IssuerServer]:
    url = f"https://127.0.0.1:{port}/{tenant_id}/v2.0" if port else ""  # port 0: set once the server listens
    issuer = Issuer.load_or_create(state_dir / "local" / "issuer", url, tenant_id)
    server = IssuerServer(issuer, tls, "127.0.0.1", port)
    server.start()
    return issuer, server
