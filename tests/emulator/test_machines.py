"""Machines: booted by cloud-init from the custom data, on the stack's subnet and nowhere else;
kill, remove and remove_all as a VM's life and a stack's teardown need them."""

from __future__ import annotations

import errno
import http.server
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from itertools import islice

import pytest

from shared.emulator.machines import Machines, MachineSpec
from shared.emulator.network import machine_ips
from tests.emulator.conftest import USER_DATA, Booted, Stack, new_stack_id

pytestmark = pytest.mark.podman


def _sh(stack: Stack, name: str, script: str) -> subprocess.CompletedProcess[str]:
    return stack.machines.exec(name, ["sh", "-c", script])


def _container_id(name: str) -> str:
    return subprocess.run(["podman", "container", "inspect", "--format", "{{.Id}}", name],
                          capture_output=True, text=True, check=True).stdout.strip()


def _spec(stack: Stack, vm: str, ip: str, stack_id: str | None = None) -> MachineSpec:
    return MachineSpec(name=f"bai-{stack_id or stack.id}-{vm}", hostname=vm, ip=ip, user_data=b"#cloud-config\n",
                       instance_id=str(uuid.uuid4()), labels={"batchai.vm": vm})


def _spare_ips(stack: Stack, count: int, offset: int) -> list[str]:
    """Addresses after the session machine's (.10), one range per test."""
    return list(islice(machine_ips(stack.network), 1 + offset, 1 + offset + count))


def test_cloud_init_ran_the_user_data_with_no_errors(stack: Stack, machine: Booted) -> None:
    name = machine.spec.name
    assert _sh(stack, name, "cat /etc/batchai-test/hello.txt").stdout == "hello from the user data\n"
    assert _sh(stack, name, "cat /etc/batchai-test/runcmd.txt").stdout == "vm0\n"
    status = stack.machines.exec(name, ["cloud-init", "status", "--long"])
    assert status.returncode == 0 and "status: done" in status.stdout, status.stdout + status.stderr
    result = json.loads(_sh(stack, name, "cat /run/cloud-init/result.json").stdout)
    assert result["v1"]["errors"] == []
    assert "en_US.utf8" in _sh(stack, name, "locale -a").stdout.split()


def test_the_seed_holds_the_user_data_byte_for_byte(stack: Stack, machine: Booted) -> None:
    seed = stack.machines.seed_dir(machine.spec.name)
    assert (seed / "user-data").read_bytes() == USER_DATA
    meta = (seed / "meta-data").read_text()
    assert f'instance-id: "{machine.spec.instance_id}"' in meta and 'local-hostname: "vm0"' in meta
    inside = stack.machines.exec(machine.spec.name, ["cat", "/var/lib/cloud/instance/user-data.txt"])
    assert inside.stdout.encode() == USER_DATA
    assert _sh(stack, machine.spec.name, "cat /var/lib/cloud/data/instance-id").stdout.strip() == \
        machine.spec.instance_id


def test_hostname_address_and_labels(stack: Stack, machine: Booted) -> None:
    name = machine.spec.name
    assert _sh(stack, name, "hostname").stdout.strip() == "vm0"
    addresses = json.loads(_sh(stack, name, "ip -j -4 addr show dev eth0").stdout)
    assert [a["local"] for a in addresses[0]["addr_info"]] == [machine.spec.ip]
    labels = json.loads(subprocess.run(["podman", "container", "inspect", "--format", "{{json .Config.Labels}}", name],
                                       capture_output=True, text=True, check=True).stdout)
    assert labels["batchai.stack"] == stack.id and labels["batchai.role"] == "machine"
    assert labels["batchai.vm"] == machine.spec.labels["batchai.vm"]
    assert stack.machines.names()[name] == "running"


@pytest.fixture
def gateway_server(stack: Stack) -> Iterator[int]:
    """An HTTP server of the host on the stack's gateway address: its port."""

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello from the gateway")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((stack.network.gateway, 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_machine_reaches_the_gateway_and_nothing_outside_its_subnet(stack: Stack, machine: Booted,
                                                                        gateway_server: int) -> None:
    name = machine.spec.name
    reply = _sh(stack, name, f"curl -sS --max-time 20 http://{stack.network.gateway}:{gateway_server}/")
    assert reply.stdout == "hello from the gateway", reply.stderr
    routes = json.loads(_sh(stack, name, "ip -j -4 route").stdout)
    assert [r["dst"] for r in routes] == [stack.network.subnet]
    # No route: the connection fails in the machine's own kernel, before any packet leaves it.
    probe = ("import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=5)\n"
             "except OSError as e:\n    print(e.errno)\nelse:\n    print('connected')")
    for _ in range(2):
        assert stack.machines.exec(name, ["python3", "-c", probe]).stdout.strip() == str(errno.ENETUNREACH)
        probe = probe.replace("192.0.2.1", "1.1.1.1")


def test_booting_again_leaves_the_running_machine_as_it_is(stack: Stack, machine: Booted) -> None:
    before = _container_id(machine.spec.name)
    stack.machines.boot(machine.spec)
    assert _container_id(machine.spec.name) == before
    assert stack.machines.state(machine.spec.name) == "running"


def test_a_killed_machine_stays_stopped_until_removed(stack: Stack) -> None:
    spec = _spec(stack, "vmk", _spare_ips(stack, 1, offset=0)[0])
    try:
        stack.machines.boot(spec)
        assert stack.machines.state(spec.name) == "running"
        stack.machines.kill(spec.name)
        assert stack.machines.state(spec.name) == "stopped"
        assert stack.machines.names()[spec.name] == "stopped"
        container = _container_id(spec.name)
        stack.machines.boot(spec)  # a dead VM does not come back by itself
        assert stack.machines.state(spec.name) == "stopped" and _container_id(spec.name) == container
        stack.machines.kill(spec.name)
        stack.machines.remove(spec.name)
        assert stack.machines.state(spec.name) == "missing"
        assert spec.name not in stack.machines.names()
        stack.machines.remove(spec.name)
        with pytest.raises(LookupError):
            stack.machines.kill(spec.name)
    finally:
        stack.machines.remove(spec.name)


def test_remove_all_removes_this_stacks_machines_only(stack: Stack, machine: Booted) -> None:
    first, second = new_stack_id(), new_stack_id()
    mine, theirs = stack.machines_of(first), stack.machines_of(second)
    ips = _spare_ips(stack, 3, offset=1)
    specs = [_spec(stack, "vm0", ips[0], first), _spec(stack, "vm1", ips[1], first),
             _spec(stack, "vm0", ips[2], second)]
    try:
        for machines, spec in zip([mine, mine, theirs], specs, strict=True):
            machines.boot(spec)
        mine.kill(specs[1].name)
        assert mine.names() == {specs[0].name: "running", specs[1].name: "stopped"}
        mine.remove_all()
        assert mine.names() == {}
        assert all(mine.state(spec.name) == "missing" for spec in specs[:2])
        assert theirs.names() == {specs[2].name: "running"}
        assert stack.machines.state(machine.spec.name) == "running"
    finally:
        mine.remove_all()
        theirs.remove_all()
    assert theirs.names() == {}


def test_an_address_outside_the_subnet_is_refused(stack: Stack) -> None:
    with pytest.raises(ValueError, match="outside"):
        Machines(stack.network, stack.machines.image, stack.id, stack.state_dir).boot(
            _spec(stack, "vmx", "10.99.0.10"))
