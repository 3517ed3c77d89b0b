"""The stack's machine network: one internal podman network per stack, with its own /24 in
10.213.0.0/16 and a host bridge that carries the gateway address from the start.

Owns the podman network `batchai-<stack id>` and its bridge. The network is `--internal`: no NAT,
no default route, no DNS, so machines reach nothing but their subnet. Podman leaves an internal
network's bridge without a host address; the bridge is created here first, with the gateway
address, so the stack's services can listen on the gateway before any machine boots.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

POOL = ipaddress.IPv4Network("10.213.0.0/16")
FIRST_MACHINE_HOST = 10  # .1 is the gateway; .2-.9 stay free for the stack's own use
STACK_LABEL = "batchai.stack"


class PodmanError(RuntimeError):
    """A podman (or ip) command failed; the message carries its stderr."""

    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"{' '.join(argv[:4])} ... exited with {result.returncode}: "
                         f"{(result.stderr or result.stdout).strip()[-2000:]}")
        self.stderr = result.stderr
        self.returncode = result.returncode


def run(argv: Sequence[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise PodmanError(argv, result)
    return result


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], check=check, timeout=timeout)


@dataclass(frozen=True)
class StackNetwork:
    name: str  # podman network name, "batchai-<stack id>"
    subnet: str  # "10.213.N.0/24"
    gateway: str  # "10.213.N.1": an address of the host on the bridge; the stack's services listen here
    bridge: str  # the host bridge interface


def network_name(stack_id: str) -> str:
    return f"batchai-{stack_id}"


def ensure_network(stack_id: str, subnet: str | None = None) -> StackNetwork:
    """Idempotent. A free /24 of 10.213.0.0/16 when `subnet` is None; parallel callers for other
    stacks may pick the same free subnet at once: podman refuses the second, which then moves on."""
    name = network_name(stack_id)
    network = _existing(name)
    if network is None:
        candidates = [ipaddress.IPv4Network(subnet)] if subnet else list(free_subnets(stack_id, _used_subnets()))
        if not candidates:
            raise RuntimeError(f"no free /24 left in {POOL} for the stack network {name}")
        network = _create(name, stack_id, candidates)
    elif subnet and network.subnet != str(ipaddress.IPv4Network(subnet)):
        raise ValueError(f"network {name} exists with subnet {network.subnet}, not {subnet}")
    _ensure_bridge(network)
    return network


def remove_network(network: StackNetwork) -> None:
    """Idempotent. Removes the network's containers too (`podman network rm -f`), then the bridge."""
    if podman("network", "exists", network.name, check=False).returncode == 0:
        result = podman("network", "rm", "-f", network.name, check=False)
        if result.returncode != 0 and podman("network", "exists", network.name, check=False).returncode == 0:
            raise PodmanError(["podman", "network", "rm", network.name], result)
    if _link_exists(network.bridge):
        run(["ip", "link", "del", network.bridge])


def machine_ips(network: StackNetwork) -> Iterator[str]:
    """.10, .11, ... up to the last host address (for the ARM IP allocator)."""
    hosts = list(ipaddress.IPv4Network(network.subnet).hosts())
    for host in hosts[FIRST_MACHINE_HOST - 1:]:
        yield str(host)


def free_subnets(stack_id: str, used: Iterable[ipaddress.IPv4Network]) -> Iterator[ipaddress.IPv4Network]:
    """Every /24 of the pool that overlaps nothing in `used`, starting at a place derived from the
    stack id so that parallel stacks seldom race for the same one."""
    used = list(used)
    subnets = list(POOL.subnets(new_prefix=24))
    start = int.from_bytes(hashlib.sha256(stack_id.encode()).digest()[:4], "big") % len(subnets)
    for candidate in subnets[start:] + subnets[:start]:
        if not any(candidate.overlaps(other) for other in used):
            yield candidate


def _existing(name: str) -> StackNetwork | None:
    result = podman("network", "inspect", name, check=False)
    if result.returncode != 0:
        if podman("network", "exists", name, check=False).returncode != 0:
            return None
        raise PodmanError(["podman", "network", "inspect", name], result)
    info = json.loads(result.stdout)[0]
    first = info["subnets"][0]
    return StackNetwork(name=name, subnet=first["subnet"], gateway=first["gateway"],
                        bridge=info["network_interface"])


def _create(name: str, stack_id: str, candidates: Sequence[ipaddress.IPv4Network]) -> StackNetwork:
    last: PodmanError | None = None
    for candidate in candidates:
        gateway = str(next(candidate.hosts()))
        result = podman("network", "create", "--internal", "--subnet", str(candidate), "--gateway", gateway,
                        "--label", f"{STACK_LABEL}={stack_id}", name, check=False)
        if result.returncode == 0:
            break
        created_meanwhile = _existing(name)  # a parallel caller of the same stack won the race
        if created_meanwhile is not None:
            return created_meanwhile
        last = PodmanError(["podman", "network", "create", name], result)
        if "already used" not in result.stderr:
            raise last
    else:
        raise last or RuntimeError(f"cannot create network {name}")
    network = _existing(name)
    if network is None:
        raise RuntimeError(f"network {name} vanished right after its creation")
    return network


def _used_subnets() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    for info in json.loads(podman("network", "ls", "--format", "json").stdout):
        for subnet in info.get("subnets") or []:
            net = ipaddress.ip_network(subnet["subnet"], strict=False)
            if isinstance(net, ipaddress.IPv4Network):
                used.append(net)
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        if route.get("dst") not in (None, "default"):
            used.append(ipaddress.IPv4Network(route["dst"], strict=False))
    for link in json.loads(run(["ip", "-j", "-4", "addr"]).stdout or "[]"):
        for addr in link.get("addr_info") or []:
            used.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return [net for net in used if net.prefixlen > 0]


def _link_exists(interface: str) -> bool:
    return run(["ip", "link", "show", "dev", interface], check=False).returncode == 0


def _ensure_bridge(network: StackNetwork) -> None:
    prefix = ipaddress.IPv4Network(network.subnet).prefixlen
    if not _link_exists(network.bridge):
        result = run(["ip", "link", "add", network.bridge, "type", "bridge"], check=False)
        if result.returncode != 0 and not _link_exists(network.bridge):  # else: a parallel caller made it
            raise PodmanError(["ip", "link", "add", network.bridge], result)
    run(["ip", "addr", "replace", f"{network.gateway}/{prefix}", "dev", network.bridge])
    run(["ip", "link", "set", network.bridge, "up"])
