"""Fixtures for the emulator's machine tests: podman (skipping loudly, with the reason, where it
cannot run), the machine image, one stack network and one booted machine per session."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.emulator.image import ensure_image
from shared.emulator.machines import Machines, MachineSpec
from shared.emulator.network import StackNetwork, ensure_network, machine_ips, remove_network
from tests.polling import wait_until

# Non-ASCII and no final newline: the seed must carry the custom data byte for byte.
USER_DATA = """#cloud-config
# batchai emulator test machine (é)
write_files:
  - path: /etc/batchai-test/hello.txt
    content: "hello from the user data\\n"
runcmd:
  - [sh, -c, "hostname > /etc/batchai-test/runcmd.txt"]""".encode()


def _skip_loudly(reason: str) -> None:
    print(f"\nSKIPPING machine tests: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def podman_ready() -> None:
    if shutil.which("podman") is None:
        _skip_loudly("podman is not installed")
    info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120)
    if info.returncode != 0:
        _skip_loudly(f"podman cannot start here: {info.stderr.strip()}")


def new_stack_id() -> str:
    return "t" + uuid.uuid4().hex[:7]


@pytest.fixture(scope="session")
def machine_image(podman_ready: None) -> str:
    started = time.monotonic()
    ref = ensure_image()
    print(f"\nmachine image {ref} ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return ref


@dataclass(frozen=True)
class Stack:
    id: str
    network: StackNetwork
    machines: Machines
    state_dir: Path

    def machines_of(self, stack_id: str) -> Machines:
        """Machines of another stack on this stack's network."""
        return Machines(self.network, self.machines.image, stack_id, self.state_dir)


@pytest.fixture(scope="session")
def stack(machine_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack_id = new_stack_id()
    network = ensure_network(stack_id)
    state_dir = tmp_path_factory.mktemp("machines-state")
    try:
        yield Stack(stack_id, network, Machines(network, machine_image, stack_id, state_dir), state_dir)
    finally:
        Machines(network, machine_image, stack_id, state_dir).remove_all()
        remove_network(network)


@dataclass(frozen=True)
class Booted:
    spec: MachineSpec
    boot_to_cloud_init_done_s: float


def cloud_init_finished(stack: Stack, name: str) -> str:
    status = stack.machines.exec(name, ["cloud-init", "status"]).stdout
    return status if ("status: done" in status or "status: error" in status) else ""


@pytest.fixture(scope="session")
def machine(stack: Stack) -> Booted:
    """One machine booted from USER_DATA, cloud-init finished."""
    spec = MachineSpec(name=f"bai-{stack.id}-vm0", hostname="vm0", ip=next(machine_ips(stack.network)),
                       user_data=USER_DATA, instance_id=str(uuid.uuid4()),
                       labels={"batchai.vm": f"/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/"
                                             f"virtualmachinescalesets/{stack.id}/virtualmachines/0"})
    started = time.monotonic()
    stack.machines.boot(spec)
    status = wait_until(lambda: cloud_init_finished(stack, spec.name), timeout=300, interval=0.5,
                        what="cloud-init to finish in the machine")
    elapsed = time.monotonic() - started
    print(f"\nmachine {spec.name}: boot to cloud-init done in {elapsed:.1f} s", file=sys.stderr)
    assert "status: done" in status, status
    return Booted(spec, elapsed)
