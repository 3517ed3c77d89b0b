"""Network rules for jobs on a machine: traffic from a job's uid to the node's own services is rejected.

A job must not get the node's identity: not from IMDS (a managed-identity token proves "a node of
this cluster" to the service's node API), not from the platform's WireServer, not from the service's
node API itself. On a machine the agent (root) installs an nftables table, ``inet batchai_jobs``,
whose output hook rejects packets whose socket belongs to a job uid (the range of
`shared.agent.job_users`) and go to one of those destinations; everything else (the subnet, the
job's storage with the credentials it was given) stays open. Installing replaces the table in one
transaction, so it is idempotent. The rules live in the machine's network namespace and are put in
place again whenever the agent starts.

Storage endpoints are not among the destinations: an address does not tell the service's account
from a job's own (the emulator's storage serves every account at one address, and Azure's front
ends serve many accounts each), and without a node credential (held by the agent, root's alone)
storage answers a job nothing of the service's.

A process node (the process topology) gets no rules: the host's network is not the agent's to
change, and there is no IMDS there.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

TABLE = "batchai_jobs"
AZURE_IMDS = "169.254.169.254"
AZURE_WIRESERVER = "168.63.129.16"
Runner = Callable[[Sequence[str], str], subprocess.CompletedProcess[str]]


class FirewallError(Exception):
    pass


@dataclass(frozen=True, order=True)
class Destination:
    address: str  # an IPv4 or IPv6 address
    port: int | None = None  # None: every port


def destinations_of(urls: Iterable[str], resolve: Callable[[str], list[str]] | None = None) -> list[Destination]:
    """The addresses and ports of `urls` (host names resolved), plus Azure's IMDS and WireServer."""
    resolve = resolve or _addresses
    found = {Destination(AZURE_IMDS), Destination(AZURE_WIRESERVER)}
    for url in urls:
        parsed = urlparse(url)
        if not parsed.hostname:
            continue
        port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
        for address in resolve(parsed.hostname):
            found.add(Destination(address, port))
    return sorted(found, key=lambda d: (d.address, d.port or 0))


def _addresses(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def ruleset(first_uid: int, last_uid: int, destinations: Iterable[Destination]) -> str:
    """The nft script that replaces the table (created empty first, so that deleting it cannot fail)."""
    rules = []
    for d in destinations:
        family = "ip6" if ipaddress.ip_address(d.address).version == 6 else "ip"
        port = f" meta l4proto {{ tcp, udp }} th dport {d.port}" if d.port else ""
        rules.append(f"    meta skuid {first_uid}-{last_uid} {family} daddr {d.address}{port} reject\n")
    return (f"table inet {TABLE}\ndelete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n"
            f"{''.join(rules)}  }}\n}}\n")


def run_nft(argv: Sequence[str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=script, capture_output=True, text=True, timeout=60)


class Firewall:
    def __init__(self, first_uid: int, last_uid: int, urls: Iterable[str], runner: Runner = run_nft) -> None:
        self.first_uid = first_uid
        self.last_uid = last_uid
        self.urls = tuple(urls)
        self.runner = runner

    def install(self) -> list[Destination]:
        """Put the rules in place; the destinations they close. Raises FirewallError."""
        try:
            blocked = destinations_of(self.urls)
            result = self.runner(("nft", "-f", "-"), ruleset(self.first_uid, self.last_uid, blocked))
        except (OSError, subprocess.SubprocessError) as error:
            raise FirewallError(f"nft could not run: {error}") from error
        if result.returncode != 0:
            raise FirewallError(f"nft exited with {result.returncode}: {(result.stderr or result.stdout).strip()}")
        return blocked
