"""The one-command local stack: Azurite, the storage the service needs, the token issuer and the owner's
token, the local trigger host serving function_app.py over https, and the endpoint file clients read.

`start_stack` is idempotent: a running stack is returned as is, and a stack of which some processes
died gets those restarted on the same ports while the others keep running. A crashed trigger host is
restarted alone (storage keeps its in-memory state and the nodes their jobs); a crashed Azurite is
restarted on its saved data and the start says what its crash may have lost (`Endpoint.notices`).
`stop_stack` stops each process with SIGTERM, in order: the trigger host (it finishes what it runs),
the nodes (powered off: the service requeues their jobs at its next start), the local cloud, and
Azurite last (it saves its data and exits). State (Azurite data, TLS, the issuer key, logs, node
directories) stays under the state directory.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from shared import telemetry
from shared.adapters import message_signing, secret_box, storage
from shared.adapters.compute import local
from shared.config import AZURITE_ACCOUNT, AZURITE_KEY
from shared.emulator.network import ensure_network, remove_network
from shared.localhost.hostjson import HostConfig
from shared.localstack import cloud_topology, processes, wheelhouse
from shared.localstack.azurite import ROOT, Azurite, free_port, start_azurite
from shared.localstack.endpoint import (
    DEFAULT_RESOURCE_GROUP,
    DEFAULT_SUBSCRIPTION,
    Endpoint,
    read_endpoint_file,
    write_endpoint_file,
)
from shared.localstack.tls import TlsFiles, ensure_tls
from shared.localstack.token import api_settings, owner_token

log = logging.getLogger("batchai.localstack")

# App settings that make the local stack quick, passed to the trigger host as environment variables.
# The process environment overrides them, and start_stack(settings=...) overrides both. Timer
# schedules that the app reads as %NAME% app settings belong here too, so local timers tick faster.
LOCAL_SETTINGS: dict[str, str] = {
    "BATCHAI_PROVIDER": "local",
    "BATCHAI_IDLE_TIMEOUT_S": "5",  # idle local nodes leave after 5 s (Azure: 300)
    "BATCHAI_HEARTBEAT_TIMEOUT_S": "15",  # a silent local node is lost after 15 s (Azure: 120)
    "BATCHAI_RECONCILE_SCHEDULE": "*/2 * * * * *",  # cluster reconciler and autoscaler (Azure: every minute)
    "BATCHAI_REAPER_SCHEDULE": "*/2 * * * * *",  # lost nodes, wall-clock limits (Azure: every minute)
    "BATCHAI_ACI_SCHEDULE": "*/2 * * * * *",  # jobs of container-instance clusters (Azure: every 15 s)
    "BATCHAI_SAFETY_SCHEDULE": "*/5 * * * * *",  # scheduling safety pass
    "BATCHAI_SCORING_SCHEDULE": "*/2 * * * * *",  # scoring runs and submission replies (Azure: every 10 s)
    "BATCHAI_SWEEPS_SCHEDULE": "*/2 * * * * *",  # parameter sweeps (Azure: every 10 s)
    # Queue polling: the trigger host's longest wait between polls of an empty queue (host.json,
    # Azure: 2 s) and the node agents' (Azure: 1 s). Every process polls Azurite on this machine.
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.2",
    "BATCHAI_AGENT_POLL_MAX_S": "0.1",
    "BATCHAI_AGENT_POLL_MIN_S": "0.02",  # after a message or a task's end (Azure: 0.1 s)
    # Telemetry files are written soon after the fact (the SDK's defaults: spans 5 s, metrics 60 s).
    "OTEL_BSP_SCHEDULE_DELAY": "500",
    "OTEL_BLRP_SCHEDULE_DELAY": "1000",
    "OTEL_METRIC_EXPORT_INTERVAL": "2000",
}

PROCESSES, MACHINES = "processes", "machines"
DEFAULT_PORTS = {"blob": 10000, "queue": 10001, "table": 10002, "https": 7071, "issuer": 7072, "keyvault": 7075}
MACHINE_PORTS = {**DEFAULT_PORTS, "arm": 7073, "imds": 7074}
ROLES = ("azurite", "emulator", "host")
ROLE_PORTS = {"azurite": ("blob", "queue", "table"), "host": ("https",),
              "emulator": ("issuer", "keyvault", "arm", "imds")}
NODE_POWER_OFF_S = 30.0
PORT_RELEASE_S = 5.0  # a killed process's listening socket may outlive it by a moment


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _choose_ports(previous: Endpoint | None, fixed: bool, defaults: dict[str, int]) -> dict[str, int]:
    chosen: dict[str, int] = {}
    for name, default in defaults.items():
        wanted = [(previous.ports.get(name) if previous else None), default] if fixed else []
        port = next((p for p in wanted if p and p not in chosen.values() and _port_free(p)), None)
        while port is None or port in chosen.values():
            port = free_port()
        chosen[name] = port
    return chosen


def _restart_ports(previous: Endpoint, live: dict[str, bool], defaults: dict[str, int]) -> dict[str, int] | None:
    """The previous ports, when every port of a role to restart is free again (else None): what still
    runs (nodes included) keeps talking to the same addresses."""
    if set(defaults) - set(previous.ports):
        return None
    needed = [previous.ports[name] for role in ROLES if not live.get(role)
              for name in ROLE_PORTS[role] if name in defaults]
    deadline = time.monotonic() + PORT_RELEASE_S
    while not all(_port_free(p) for p in needed):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return dict(previous.ports)


def _alive(endpoint: Endpoint, name: str) -> psutil.Process | None:
    return processes.process(endpoint.pids.get(name), endpoint.started.get(name))


def read_endpoint(state_dir: Path | str) -> Endpoint | None:
    """The endpoint file of the stack under `state_dir` (also after `down`: it keeps the owner's token)."""
    return read_endpoint_file(Path(state_dir).resolve())


def stack_status(state_dir: Path | str) -> dict[str, Any]:
    endpoint = read_endpoint(state_dir)
    if endpoint is None:
        return {"running": False, "processes": {}}
    procs = {name: bool(_alive(endpoint, name)) for name in ROLES}
    return {"running": all(procs.values()), "processes": {n: endpoint.pids.get(n) if up else None
                                                          for n, up in procs.items()}, "endpoint": endpoint}


def _host_env(state_dir: Path, conn: str, settings: dict[str, str] | None) -> dict[str, str]:
    return {**LOCAL_SETTINGS, **os.environ, **(settings or {}),
            "BATCHAI_STORAGE_CONNECTION_STRING": conn, "AzureWebJobsStorage": conn,
            "BATCHAI_STATE_DIR": str(state_dir), "BATCHAI_TELEMETRY_DIR": str(telemetry.telemetry_dir(state_dir)),
            "BATCHAI_SECRETS_KEY": secret_box.ensure_key_file(state_dir / "local" / "secrets.key")}


def _node_settings(state_dir: Path, bind: str, ports: dict[str, int], tls: TlsFiles,
                   cloud: dict[str, Any]) -> dict[str, str]:
    """How the service talks to its nodes: the key it signs their messages with (made once, kept
    0600 under the state directory), its URL and CA for them, and the stack's Key Vault."""
    path = state_dir / "local" / "message.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(message_signing.new_key())
        os.replace(tmp, path)
    return {"BATCHAI_MESSAGE_KEY": path.read_text().strip(),
            "BATCHAI_NODE_SERVICE_URL": f"https://{bind}:{ports['https']}", "BATCHAI_NODE_CA_FILE": str(tls.ca_file),
            "BATCHAI_KEY_VAULT_HOSTS": f"*.vault.azure.net,{urlsplit(str(cloud['keyvault'])).netloc}",
            "BATCHAI_KEY_VAULT_CA_FILE": str(tls.ca_file),
            "BATCHAI_LOCAL_ISSUER_DIR": str(state_dir / "local" / "issuer")}


@dataclass
class _Start:
    """One start of the stack: what it runs (kept or started), and what it started (stopped on failure)."""

    state_dir: Path
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)

    def keep(self, previous: Endpoint, role: str) -> None:
        self.pids[role], self.started[role] = previous.pids[role], previous.started[role]

    def add(self, role: str, pid: int) -> None:
        self.pids[role], self.started[role] = pid, psutil.Process(pid).create_time()
        self.new.append(role)

    def undo(self) -> None:
        stops = {"host": lambda p, t: processes.stop_host(p, t), "emulator": processes.stop_emulator,
                 "azurite": lambda p, t: processes.stop_storage(p, t, self.state_dir / "azurite")}
        for role in ("host", "emulator", "azurite"):
            if role in self.new:
                stops[role](self.pids[role], self.started[role])


def start_stack(state_dir: Path | str, settings: dict[str, str] | None = None, fixed_ports: bool = True,
                app: str = "function_app", timeout_s: float = 90.0, topology: str = PROCESSES,
                storage_access_log: bool = False) -> Endpoint:
    """Start the stack under `state_dir` (or return the running one, or restart the parts of it that
    died, on the same ports) and write its endpoint file.

    fixed_ports: for a fresh stack, the previous or default ports (10000-10002, 7071) where free; False
    picks free ones. topology: PROCESSES (nodes are agent processes here) or MACHINES (see `cloud_topology`).
    storage_access_log: Azurite logs every request to logs/azurite.log (a started Azurite only).
    """
    state_dir = Path(state_dir).resolve()
    previous = read_endpoint_file(state_dir)
    defaults = MACHINE_PORTS if topology == MACHINES else DEFAULT_PORTS
    same = previous is not None and previous.topology == topology
    live = {role: _alive(previous, role) is not None for role in ROLES} if previous and same else {}
    if previous and same and all(live.values()):
        token = owner_token(state_dir, previous.issuer, previous.token)
        if token != previous.token:  # renewed
            previous.token = token
            write_endpoint_file(state_dir, previous)
        return previous
    ports = _restart_ports(previous, live, defaults) if previous and same else None
    if ports is None:  # a fresh start: whatever is left of an earlier stack (or the other topology) stops
        if previous is not None:
            _stop_processes(previous, state_dir)
        live = {}
        ports = _choose_ports(previous if same else None, fixed_ports, defaults)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    run = _Start(state_dir, ports)
    try:
        endpoint = _start_parts(run, previous if same else None, live, settings, app, timeout_s, topology,
                                storage_access_log)
    except BaseException:
        run.undo()
        raise
    return endpoint


def _start_parts(run: _Start, previous: Endpoint | None, live: dict[str, bool], settings: dict[str, str] | None,
                 app: str, timeout_s: float, topology: str, storage_access_log: bool = False) -> Endpoint:
    state_dir, ports = run.state_dir, run.ports
    subscription = previous.subscription_id if previous else DEFAULT_SUBSCRIPTION
    plan = cloud_topology.prepare(state_dir) if topology == MACHINES else None
    bind = plan.network.gateway if plan else "127.0.0.1"
    accounts = plan.accounts if plan else {AZURITE_ACCOUNT: AZURITE_KEY}
    notices: list[str] = []
    if previous and live.get("azurite"):
        azurite = Azurite(None, ports["blob"], ports["queue"], ports["table"], host=bind, accounts=dict(accounts),
                          location=state_dir / "azurite", pid=previous.pids["azurite"])
        run.keep(previous, "azurite")
    else:
        azurite = start_azurite(state_dir / "azurite", ports["blob"], ports["queue"], ports["table"],
                                log=state_dir / "logs" / "azurite.log", host=bind,
                                accounts=plan.accounts if plan else None, access_log=storage_access_log)
        run.add("azurite", processes.remember(azurite.process).pid)  # type: ignore[arg-type]
        if azurite.unclean:
            notices.append(azurite.unclean)
            log.warning("%s", azurite.unclean)
    conn = azurite.connection_string
    storage.ensure_all(conn)
    tls = ensure_tls(state_dir / "tls", ips=[bind] if plan else ())
    data_conn = conn
    if plan is not None:
        data_conn = azurite.account_connection_string(cloud_topology.DATA_ACCOUNT)
        storage.ensure_all(data_conn)
        wheelhouse.publish(conn, wheelhouse.build_wheelhouse(cloud_topology.NODE_EXTRAS))
    if previous and live.get("emulator"):
        from shared.emulator.__main__ import ready_path

        ready = json.loads(ready_path(state_dir).read_text())
        run.keep(previous, "emulator")
    else:
        cloud, ready = cloud_topology.start_emulator(state_dir, subscription, ports, plan)
        run.add("emulator", processes.remember(cloud).pid)
    token = owner_token(state_dir, str(ready["issuer"]), previous.token if previous else None)
    prefix = HostConfig.load(ROOT / "host.json").route_prefix.strip("/")
    url = f"https://{bind}:{ports['https']}" + (f"/{prefix}" if prefix else "")
    host = None
    if previous and live.get("host"):
        run.keep(previous, "host")
    else:
        machine = cloud_topology.host_settings(plan, azurite, ready, tls, ports["https"], subscription) if plan else {}
        env = {**_host_env(state_dir, conn, settings), **cloud_topology.issuer_settings(ready, tls),
               **api_settings(str(ready["issuer"])), **_node_settings(state_dir, bind, ports, tls, ready),
               **machine, "BatchaiData": data_conn, **(settings or {})}
        host = processes.start_host(state_dir, ports["https"], env, app, bind)
        run.add("host", host.pid)
    endpoint = Endpoint(
        url=url, token=token, ca_file=str(tls.ca_file), storage_connection_string=data_conn,
        subscription_id=subscription, resource_group=previous.resource_group if previous else DEFAULT_RESOURCE_GROUP,
        pids=dict(run.pids), started=dict(run.started), ports=ports, topology=topology, issuer=str(ready["issuer"]),
        notices=notices)
    write_endpoint_file(state_dir, endpoint)
    if host is not None:
        processes.wait_https(endpoint.url, endpoint.ca_file, host, state_dir, timeout_s)
    return endpoint


def _stop_processes(endpoint: Endpoint, state_dir: Path) -> dict[str, bool]:
    """Stop in order: the host (no new work), the nodes (powered off), the local cloud, storage (last:
    everything else writes to it). Each entry: whether that part stopped on SIGTERM."""
    def stop(role: str, how: Any) -> bool:
        pid = endpoint.pids.get(role)
        return how(pid, endpoint.started.get(role)) if pid else True

    report = {"host": stop("host", processes.stop_host)}
    local.stop_all(state_dir, grace_s=NODE_POWER_OFF_S)
    report["emulator"] = stop("emulator", processes.stop_emulator)
    report["azurite"] = stop("azurite", lambda p, t: processes.stop_storage(p, t, state_dir / "azurite"))
    return report


def stop_stack(state_dir: Path | str) -> dict[str, bool]:
    """Stop the stack under `state_dir` (a no-op when it is down); the endpoint file keeps the owner's token.
    Returns, per process, whether it stopped on SIGTERM (False: it had to be killed)."""
    state_dir = Path(state_dir).resolve()
    endpoint = read_endpoint_file(state_dir)
    if endpoint is None:
        return {}
    report = _stop_processes(endpoint, state_dir)
    if endpoint.topology == MACHINES:
        remove_network(ensure_network(cloud_topology.stack_id_of(state_dir)))
    endpoint.pids, endpoint.started = {}, {}
    write_endpoint_file(state_dir, endpoint)
    return report
