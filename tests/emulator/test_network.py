"""The stack network: a free /24 per stack, the gateway bound on the host before any machine,
idempotent ensure, removal that leaves nothing behind."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.emulator.network import (
    POOL,
    StackNetwork,
    ensure_network,
    free_subnets,
    machine_ips,
    network_name,
    remove_network,
)
from tests.emulator.conftest import new_stack_id

net = ipaddress.IPv4Network


def _host_addresses(interface: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", interface], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out.stdout) for a in link["addr_info"]]


def _link_exists(interface: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", interface], capture_output=True).returncode == 0


def _podman_network_exists(name: str) -> bool:
    return subprocess.run(["podman", "network", "exists", name]).returncode == 0


@pytest.fixture
def networks(podman_ready: None) -> Iterator[list[StackNetwork]]:
    """Networks a test created: removed at its end whatever happens."""
    created: list[StackNetwork] = []
    yield created
    for network in created:
        remove_network(network)


@pytest.mark.podman
def test_two_stacks_get_different_free_subnets_with_the_gateway_on_the_host(networks: list[StackNetwork]) -> None:
    first, second = ensure_network(new_stack_id()), ensure_network(new_stack_id())
    networks += [first, second]
    assert first.subnet != second.subnet
    for network in (first, second):
        assert net(network.subnet).subnet_of(POOL) and net(network.subnet).prefixlen == 24
        assert ipaddress.ip_address(network.gateway) == next(net(network.subnet).hosts())
        assert _host_addresses(network.bridge) == [f"{network.gateway}/24"]
        conflist = json.loads(Path(f"/etc/cni/net.d/{network.name}.conflist").read_text())
        assert conflist["plugins"][0]["bridge"] == network.bridge


@pytest.mark.podman
def test_the_host_serves_on_the_gateway_before_any_machine_exists(networks: list[StackNetwork]) -> None:
    network = ensure_network(new_stack_id())
    networks.append(network)
    with socket.create_server((network.gateway, 0)) as server:
        port = server.getsockname()[1]
        threading.Thread(target=lambda: server.accept()[0].sendall(b"gateway"), daemon=True).start()
        with socket.create_connection((network.gateway, port), timeout=10) as client:
            assert client.recv(16) == b"gateway"


@pytest.mark.podman
def test_ensure_is_idempotent_and_brings_back_a_lost_bridge(networks: list[StackNetwork]) -> None:
    stack_id = new_stack_id()
    network = ensure_network(stack_id)
    networks.append(network)
    assert ensure_network(stack_id) == network
    subprocess.run(["ip", "link", "del", network.bridge], check=True)  # as after a host reboot
    assert ensure_network(stack_id) == network
    assert _host_addresses(network.bridge) == [f"{network.gateway}/24"]


@pytest.mark.podman
def test_an_explicit_subnet_is_used_and_a_different_one_is_refused(networks: list[StackNetwork]) -> None:
    probe = ensure_network(new_stack_id())
    remove_network(probe)  # its subnet was free a moment ago
    stack_id = new_stack_id()
    network = ensure_network(stack_id, subnet=probe.subnet)
    networks.append(network)
    assert network.subnet == probe.subnet
    other = str(next(s for s in POOL.subnets(new_prefix=24) if str(s) != probe.subnet))
    with pytest.raises(ValueError, match="exists with subnet"):
        ensure_network(stack_id, subnet=other)


def _colliding_stack_ids() -> tuple[str, str]:
    """Two stack ids whose search for a free subnet starts at the same /24."""
    seen: dict[ipaddress.IPv4Network, str] = {}
    while True:
        stack_id = new_stack_id()
        start = next(free_subnets(stack_id, []))
        if start in seen:
            return seen[start], stack_id
        seen[start] = stack_id


@pytest.mark.podman
def test_parallel_stacks_racing_for_one_subnet_both_get_a_network(networks: list[StackNetwork]) -> None:
    ids = _colliding_stack_ids()
    results: dict[str, StackNetwork] = {}
    errors: list[BaseException] = []

    def create(stack_id: str) -> None:
        try:
            results[stack_id] = ensure_network(stack_id)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=create, args=(stack_id,)) for stack_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    networks += list(results.values())
    assert not errors, errors
    assert len({results[stack_id].subnet for stack_id in ids}) == 2


@pytest.mark.podman
def test_remove_leaves_no_network_and_no_bridge_and_is_idempotent(networks: list[StackNetwork]) -> None:
    network = ensure_network(new_stack_id())
    remove_network(network)
    remove_network(network)
    assert not _podman_network_exists(network.name)
    assert not _link_exists(network.bridge)
    assert not Path(f"/etc/cni/net.d/{network.name}.conflist").exists()


def test_free_subnets_skip_every_overlap_and_start_where_the_stack_id_points() -> None:
    assert network_name("abc") == "batchai-abc"
    everything = list(free_subnets("abc", []))
    assert len(everything) == 256 and len(set(everything)) == 256
    assert list(free_subnets("abc", [])) == everything  # the same start for the same id
    first = everything[0]
    assert next(free_subnets("abc", [first])) == everything[1]
    assert next(free_subnets("abc", [net("10.213.0.0/16")]), None) is None
    assert next(free_subnets("abc", [net("10.0.0.0/8")]), None) is None
    wide_route = net(f"{first.network_address}/23", strict=False)
    assert all(not s.overlaps(wide_route) for s in free_subnets("abc", [wide_route]))
    host_address = net(f"{everything[1].network_address + 7}/32")
    assert everything[1] not in list(free_subnets("abc", [host_address]))


def test_machine_ips_start_at_10_and_stay_in_the_subnet() -> None:
    network = StackNetwork("batchai-x", "10.213.42.0/24", "10.213.42.1", "cni-podman9")
    ips = list(machine_ips(network))
    assert ips[:2] == ["10.213.42.10", "10.213.42.11"]
    assert ips[-1] == "10.213.42.254" and len(ips) == 245
