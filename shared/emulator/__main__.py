"""`python -m shared.emulator --state-dir DIR --stack-id ID [--network NAME ...]`: the local cloud.

Always the token issuer (the stack's Entra ID) and Key Vault (secrets); with `--network`, the
machine topology's ARM emulator (compute, network, container instances) whose instances are machines
on that podman network, and IMDS and Key Vault on the network's gateway. When everything listens,
`<state>/emulator/ready.json` says where. SIGTERM stops the servers and removes the stack's machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from shared.emulator.arm.podman_groups import PodmanContainerGroups
from shared.emulator.arm.server import ArmEmulator
from shared.emulator.cloud import LocalCloud, MachineBackend, ip_allocator, start_issuer
from shared.emulator.imds import Imds
from shared.emulator.keyvault import KeyVault
from shared.emulator.machines import Machines
from shared.emulator.network import ensure_network
from shared.localstack.tls import ensure_tls


def ready_path(state_dir: Path) -> Path:
    return state_dir / "emulator" / "ready.json"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m shared.emulator", description=__doc__)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--stack-id", required=True)
    p.add_argument("--tenant-id", required=True)
    p.add_argument("--subscription-id", required=True)
    p.add_argument("--issuer-port", type=int, default=0)
    p.add_argument("--network", default="", help="the stack's podman network: run ARM, IMDS and machines")
    p.add_argument("--image", default="", help="the machines' image")
    p.add_argument("--arm-port", type=int, default=0)
    p.add_argument("--imds-port", type=int, default=0)
    p.add_argument("--keyvault-port", type=int, default=0)
    p.add_argument("--preempt-notice", type=float, default=30.0, help="seconds between Preempt and eviction")
    return p.parse_args(argv)


def start(a: argparse.Namespace) -> tuple[LocalCloud, dict[str, object]]:
    state = a.state_dir.resolve()
    tls = ensure_tls(state / "tls")
    issuer, issuer_server = start_issuer(state, tls, a.issuer_port, a.tenant_id)
    cloud = LocalCloud(issuer, issuer_server)
    ready: dict[str, object] = {"pid": os.getpid(), "issuer": issuer.url, "tenant_id": a.tenant_id}
    network = ensure_network(a.stack_id) if a.network else None
    cloud.keyvault = KeyVault(state / "keyvault", tls, issuer.url, str(tls.ca_file),
                              network.gateway if network else "127.0.0.1", a.keyvault_port).start()
    ready["keyvault"] = cloud.keyvault.url
    if network:
        cloud.machines = Machines(network, a.image, a.stack_id, state)
        backend = MachineBackend(cloud.machines, a.stack_id, notice_s=a.preempt_notice)
        held: list[ArmEmulator] = []
        # Container groups run for real too, without a network (the machines' addresses are the ARM's to give).
        groups = PodmanContainerGroups(state, a.stack_id)
        arm = ArmEmulator(state, a.subscription_id, backend=backend, tenant_id=a.tenant_id, container_groups=groups,
                          allocate_ip=ip_allocator(network, lambda: {vm.private_ip for vm in held[0].vm_records()}))
        held.append(arm)
        cloud.arm = arm.start("127.0.0.1", a.arm_port)
        cloud.imds = Imds(issuer, arm.vm_by_ip, network.gateway, a.imds_port)
        cloud.imds.start()
        backend.imds = cloud.imds
        ready.update(arm=arm.url, arm_ca_file=arm.ca_file, imds=cloud.imds.url, network=network.name,
                     gateway=network.gateway, subnet=network.subnet)
    return cloud, ready


def main(argv: list[str] | None = None) -> int:
    a = _parse(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cloud, ready = start(a)
    path = ready_path(a.state_dir.resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ready, indent=2))
    os.replace(tmp, path)
    stop.wait()
    cloud.stop(remove_machines=True)
    path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
