"""The machines of the machine topology: one podman container per VM, systemd as PID 1, its own
hostname and fixed IP on the stack network, booted by cloud-init from a NoCloud seed that holds the
VM's custom data byte for byte, and as vendor data what Azure's provisioning does beside it (the
admin user of the VM's osProfile).

Owns the stack's machine containers (labels `batchai.stack=<stack id>`, `batchai.role=machine`)
and their seeds under `<state>/emulator/seeds/<name>/`. Every machine sees the emulated Azure file
shares (`<state>/fileshares`) at /mnt/emulator/fileshares and the emulated NFS exports
(`<state>/emulator/nfs`) at /mnt/emulator/nfs, which the image's mount.cifs and mount.nfs
stand-ins bind-mount. A machine that stopped stays stopped, as a dead VM does: `boot` never
restarts it. A machine may change its own network rules (NET_ADMIN, in its own network namespace),
as a VM's root may: its agent closes the machine's identity endpoints to jobs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.emulator.network import STACK_LABEL, PodmanError, StackNetwork, podman

ROLE_LABEL = "batchai.role"
VM_LABEL = "batchai.vm"
SEED_MOUNT = "/var/lib/cloud/seed/nocloud"
FILESHARES_MOUNT = "/mnt/emulator/fileshares"
NFS_MOUNT = "/mnt/emulator/nfs"
STOP_TIMEOUT_S = 60


@dataclass(frozen=True)
class MachineSpec:
    name: str  # container name, unique per host: f"bai-{stack_id}-{vm name}"
    hostname: str  # the VM's computer name
    ip: str  # fixed address in the network's subnet (what ARM reports as private IP)
    user_data: bytes  # the custom data, decoded: cloud-init user data, byte for byte
    instance_id: str  # cloud-init meta-data instance-id (the VM's vmId)
    labels: Mapping[str, str]
    vendor_data: bytes = b""  # cloud-init vendor data: what the platform provisions (the admin user)


def _state_of(podman_state: str) -> str:
    return "running" if podman_state.lower() == "running" else "stopped"


class Machines:
    def __init__(self, network: StackNetwork, image: str, stack_id: str, state_dir: Path) -> None:
        self.network = network
        self.image = image
        self.stack_id = stack_id
        self.state_dir = Path(state_dir)

    @property
    def fileshares_dir(self) -> Path:
        return self.state_dir / "fileshares"

    @property
    def nfs_dir(self) -> Path:
        return self.state_dir / "emulator" / "nfs"

    def seed_dir(self, name: str) -> Path:
        return self.state_dir / "emulator" / "seeds" / name

    def boot(self, spec: MachineSpec) -> None:
        """Idempotent: an existing machine, running or stopped, is left as it is."""
        if ipaddress.ip_address(spec.ip) not in ipaddress.ip_network(self.network.subnet):
            raise ValueError(f"machine {spec.name}: {spec.ip} is outside {self.network.subnet}")
        if self.state(spec.name) != "missing":
            return
        seed = self._write_seed(spec)
        for directory in (self.fileshares_dir, self.nfs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        labels = {**spec.labels, STACK_LABEL: self.stack_id, ROLE_LABEL: "machine"}
        argv = ["run", "-d", "--name", spec.name, "--hostname", spec.hostname,
                "--network", self.network.name, "--ip", spec.ip, "--systemd=always", "--pull=never",
                "--device", "/dev/fuse", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
                "-v", f"{seed}:{SEED_MOUNT}:ro",
                "-v", f"{self.fileshares_dir}:{FILESHARES_MOUNT}",
                "-v", f"{self.nfs_dir}:{NFS_MOUNT}",
                *(arg for key, value in sorted(labels.items()) for arg in ("--label", f"{key}={value}")),
                self.image, "/sbin/init"]
        result = podman(*argv, check=False)
        if result.returncode == 0:
            return
        if "already in use" in result.stderr and self.state(spec.name) != "missing":
            return  # a parallel boot of the same machine won
        podman("rm", "-f", "--ignore", spec.name, check=False)  # a failed start can leave it Created
        raise PodmanError(["podman", *argv], result)

    def state(self, name: str) -> str:
        """"running" | "stopped" | "missing"."""
        result = podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
        if result.returncode == 0:
            return _state_of(result.stdout.strip())
        if podman("container", "exists", name, check=False).returncode == 1:
            return "missing"
        raise PodmanError(["podman", "container", "inspect", name], result)

    def kill(self, name: str) -> None:
        """The machine dies at once (SIGKILL to its init); it stays, stopped. Returns once stopped."""
        state = self.state(name)
        if state == "missing":
            raise LookupError(f"no machine {name}")
        if state == "running":
            result = podman("kill", name, check=False)
            if result.returncode != 0 and self.state(name) == "running":
                raise PodmanError(["podman", "kill", name], result)
        podman("wait", name, check=False, timeout=STOP_TIMEOUT_S)
        if self.state(name) == "running":
            raise RuntimeError(f"machine {name} is still running after podman kill")

    def remove(self, name: str) -> None:
        """Idempotent."""
        podman("rm", "-f", "-t", "0", "--ignore", name, timeout=STOP_TIMEOUT_S)

    def remove_all(self) -> None:
        """Every machine of this stack; other stacks' machines stay."""
        names = list(self.names())
        if names:
            podman("rm", "-f", "-t", "0", "--ignore", *names, timeout=STOP_TIMEOUT_S)

    def names(self) -> dict[str, str]:
        """name -> "running" | "stopped", for this stack's machines."""
        listing = podman("ps", "-a", "--filter", f"label={STACK_LABEL}={self.stack_id}", "--format", "json")
        machines = {}
        for container in json.loads(listing.stdout or "[]"):
            if (container.get("Labels") or {}).get(ROLE_LABEL) == "machine":
                machines[container["Names"][0]] = _state_of(container["State"])
        return machines

    def exec(self, name: str, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`argv` run as root inside the machine; the result as is (check its returncode)."""
        return subprocess.run(["podman", "exec", name, *argv], capture_output=True, text=True, timeout=timeout)

    def _write_seed(self, spec: MachineSpec) -> Path:
        seed = self.seed_dir(spec.name)
        seed.mkdir(parents=True, exist_ok=True)
        seed.chmod(0o700)  # the user data may hold secrets
        meta = f"instance-id: {json.dumps(spec.instance_id)}\nlocal-hostname: {json.dumps(spec.hostname)}\n"
        files = [("user-data", spec.user_data), ("meta-data", meta.encode())]
        if spec.vendor_data:
            files.append(("vendor-data", spec.vendor_data))
        for file, content in files:
            path = seed / file
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(content)
        return seed
