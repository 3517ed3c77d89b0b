"""Shared by the identity tests: a running issuer with the stack's TLS files, and VM records for IMDS."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.emulator.imds import Imds
from shared.emulator.issuer import Issuer, IssuerServer
from shared.localstack.tls import TlsFiles, ensure_tls

TENANT = "72f988bf-0000-4000-8000-00000000c0de"


@contextmanager
def running_issuer(directory: Path) -> Iterator[tuple[IssuerServer, TlsFiles]]:
    """An issuer on 127.0.0.1, port chosen at start (the issuer's URL is fixed then)."""
    tls = ensure_tls(directory / "tls")
    server = IssuerServer(Issuer.load_or_create(directory / "issuer", "", TENANT), tls).start()
    try:
        yield server, tls
    finally:
        server.stop()


@dataclass(frozen=True)
class Identity:
    kind: str
    resource_id: str
    principal_id: str
    client_id: str
    tenant_id: str = TENANT


@dataclass(frozen=True)
class Vm:
    resource_id: str
    name: str
    computer_name: str
    vm_id: str
    private_ip: str
    vm_size: str = "Standard_D2s_v3"
    priority: str = "Regular"
    location: str = "westeurope"
    subscription_id: str = "00000000-0000-0000-0000-000000000001"
    resource_group: str = "batchai-compute"
    scale_set: str = ""
    identities: tuple[Identity, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


@contextmanager
def running_imds(issuer: Issuer, vms: Mapping[str, Vm], clock: Callable[[], float] = time.time) -> Iterator[Imds]:
    """IMDS on 127.0.0.1 answering the VM whose private IP is the caller's address (127.0.0.1 in tests)."""
    imds = Imds(issuer, vms.get, "127.0.0.1", clock=clock).start()
    try:
        yield imds
    finally:
        imds.stop()


def imds_client(imds: Imds) -> httpx.Client:
    """A client that talks to IMDS directly (no proxy from the environment), with the Metadata header."""
    return httpx.Client(base_url=imds.url, headers={"Metadata": "true"}, trust_env=False, timeout=10)
