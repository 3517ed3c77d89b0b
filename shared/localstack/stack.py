"""The one-command local stack: Azurite, the storage the service needs, the token issuer and the owner's
token, the local trigger host serving function_app.py over https, and the endpoint file clients read.

`start_stack` is idempotent (a running stack is returned as is); `stop_stack` stops the trigger host
with every process it started (its process group and descendants: node agents) and then Azurite.
State (Azurite data, TLS, the issuer key, logs, node directories) stays under the state directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from shared.adapters import message_signing, secret_box, storage
from shared.emulator.network import ensure_network, remove_network
from shared.localhost.hostjson import HostConfig
from shared.localstack import cloud_topology, wheelhouse
from shared.localstack.azurite import ROOT, free_port, start_azurite, stop_pid
from shared.localstack.endpoint import (
    DEFAULT_RESOURCE_GROUP,
    DEFAULT_SUBSCRIPTION,
    Endpoint,
    read_endpoint_file,
    write_endpoint_file,
)
from shared.localstack.tls import TlsFiles, ensure_tls
from shared.localstack.token import api_settings, owner_token

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
    # Queue polling: the trigger host's longest wait between polls of an empty queue (host.json,
    # Azure: 2 s) and the node agents' (Azure: 1 s). Every process polls Azurite on this machine.
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.2",
    "BATCHAI_AGENT_POLL_MAX_S": "0.1",
    "BATCHAI_AGENT_POLL_MIN_S": "0.02",  # after a message or a task's end (Azure: 0.1 s)
}

PROCESSES, MACHINES = "processes", "machines"
DEFAULT_PORTS = {"blob": 10000, "queue": 10001, "table": 10002, "https": 7071, "issuer": 7072, "keyvault": 7075}
MACHINE_PORTS = {**DEFAULT_PORTS, "arm": 7073, "imds": 7074}
HOST_STOP_GRACE_S = 15.0  # the host waits up to 10 s for running functions
AZURITE_STOP_GRACE_S = 15.0  # Azurite saves its data on SIGTERM once its connections are idle (~10 s)
EMULATOR_STOP_GRACE_S = 60.0  # it removes the stack's machines first
_children: dict[int, subprocess.Popen[bytes]] = {}  # processes this Python process started, reaped on stop


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


def _process(pid: int | None, started: float | None) -> psutil.Process | None:
    """The live process with this pid and start time (never a reused pid), else None."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 0.01:
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.NoSuchProcess:
        return None


def _alive(endpoint: Endpoint, name: str) -> psutil.Process | None:
    return _process(endpoint.pids.get(name), endpoint.started.get(name))


def read_endpoint(state_dir: Path | str) -> Endpoint | None:
    """The endpoint file of the stack under `state_dir` (also after `down`: it keeps the owner's token)."""
    return read_endpoint_file(Path(state_dir).resolve())


def _roles(endpoint: Endpoint) -> tuple[str, ...]:
    return ("host", "azurite", "emulator")


def stack_status(state_dir: Path | str) -> dict[str, Any]:
    endpoint = read_endpoint(state_dir)
    if endpoint is None:
        return {"running": False, "processes": {}}
    procs = {name: bool(_alive(endpoint, name)) for name in _roles(endpoint)}
    return {"running": all(procs.values()), "processes": {n: endpoint.pids.get(n) if up else None
                                                          for n, up in procs.items()}, "endpoint": endpoint}


def _host_env(state_dir: Path, conn: str, settings: dict[str, str] | None) -> dict[str, str]:
    return {**LOCAL_SETTINGS, **os.environ, **(settings or {}),
            "BATCHAI_STORAGE_CONNECTION_STRING": conn, "AzureWebJobsStorage": conn,
            "BATCHAI_STATE_DIR": str(state_dir),
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


def _start_host(state_dir: Path, port: int, env: dict[str, str], app: str, bind: str) -> subprocess.Popen[bytes]:
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "host.stderr.log", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.localhost", "--app", app, "--port", str(port), "--bind", bind,
             "--state-dir", str(state_dir), "--no-stderr-log"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: `down` stops the host and its node agents
    _children[process.pid] = process
    return process


def _log_tail(state_dir: Path, lines: int = 20) -> str:
    parts = []
    for name in ("host.stderr.log", "host.log"):
        path = state_dir / "logs" / name
        if path.exists():
            parts.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(parts)


def _wait_https(endpoint: Endpoint, host: subprocess.Popen[bytes], state_dir: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if host.poll() is not None:
            raise RuntimeError(f"the trigger host exited with {host.returncode}\n{_log_tail(state_dir)}")
        try:
            httpx.get(endpoint.url + "/", verify=ssl.create_default_context(cafile=endpoint.ca_file), timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the trigger host did not answer at {endpoint.url} in {timeout_s:.0f} s\n"
                                   f"{_log_tail(state_dir)}") from None
        time.sleep(0.1)


def start_stack(state_dir: Path | str, settings: dict[str, str] | None = None, fixed_ports: bool = True,
                app: str = "function_app", timeout_s: float = 90.0, topology: str = PROCESSES) -> Endpoint:
    """Start the stack under `state_dir` (or return the running one) and write its endpoint file.

    fixed_ports: use the previous or default ports (10000-10002, 7071) where free; False picks free ones.
    topology: PROCESSES (nodes are agent processes here) or MACHINES (see `cloud_topology`).
    """
    state_dir = Path(state_dir).resolve()
    previous = read_endpoint_file(state_dir)
    if previous and previous.topology == topology and all(_alive(previous, n) for n in _roles(previous)):
        token = owner_token(state_dir, previous.issuer, previous.token)
        if token != previous.token:  # renewed
            previous.token = token
            write_endpoint_file(state_dir, previous)
        return previous
    if previous and previous.pids:
        _stop_processes(previous)  # half of an earlier stack (or the other topology): start afresh
    ports = _choose_ports(previous if previous and previous.topology == topology else None, fixed_ports,
                          MACHINE_PORTS if topology == MACHINES else DEFAULT_PORTS)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    subscription = previous.subscription_id if previous else DEFAULT_SUBSCRIPTION
    plan = cloud_topology.prepare(state_dir) if topology == MACHINES else None
    bind = plan.network.gateway if plan else "127.0.0.1"
    azurite = start_azurite(state_dir / "azurite", ports["blob"], ports["queue"], ports["table"],
                            log=state_dir / "logs" / "azurite.log", host=bind, accounts=plan.accounts if plan else None)
    _children[azurite.process.pid] = azurite.process
    host: subprocess.Popen[bytes] | None = None
    cloud: subprocess.Popen[bytes] | None = None
    try:
        conn = azurite.connection_string
        storage.ensure_all(conn)
        tls = ensure_tls(state_dir / "tls", ips=[bind] if plan else ())
        env = _host_env(state_dir, conn, settings)
        pids = {"azurite": azurite.process.pid}
        data_conn = conn
        if plan is not None:
            data_conn = azurite.account_connection_string(cloud_topology.DATA_ACCOUNT)
            storage.ensure_all(data_conn)
            wheelhouse.publish(conn, wheelhouse.build_wheelhouse(cloud_topology.NODE_EXTRAS))
        cloud, ready = cloud_topology.start_emulator(state_dir, subscription, ports, plan)
        _children[cloud.pid] = cloud
        pids["emulator"] = cloud.pid
        machine = cloud_topology.host_settings(plan, azurite, ready, tls, ports["https"], subscription) if plan else {}
        token = owner_token(state_dir, str(ready["issuer"]), previous.token if previous else None)
        nodes = _node_settings(state_dir, bind, ports, tls, ready)
        env = {**env, **cloud_topology.issuer_settings(ready, tls), **api_settings(str(ready["issuer"])), **nodes,
               **machine, "BatchaiData": data_conn, **(settings or {})}
        host = _start_host(state_dir, ports["https"], env, app, bind)
        pids["host"] = host.pid
        prefix = HostConfig.load(ROOT / "host.json").route_prefix.strip("/")
        endpoint = Endpoint(
            url=f"https://{bind}:{ports['https']}" + (f"/{prefix}" if prefix else ""), token=token,
            ca_file=str(tls.ca_file), storage_connection_string=data_conn, subscription_id=subscription,
            resource_group=previous.resource_group if previous else DEFAULT_RESOURCE_GROUP,
            pids=pids, started={n: psutil.Process(p).create_time() for n, p in pids.items()}, ports=ports,
            topology=topology, issuer=str(ready["issuer"]))
        write_endpoint_file(state_dir, endpoint)
        _wait_https(endpoint, host, state_dir, timeout_s)
    except BaseException:
        if host is not None:
            _stop_host(host.pid, None)
        if cloud is not None:
            _stop_emulator(cloud.pid, None)
        _stop_azurite(azurite.process.pid, None)
        raise
    return endpoint


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def _group_members(pgid: int, since: float | None) -> list[psutil.Process]:
    """Processes in the host's process group started no earlier than the host (node agents whose
    parent died included), so a reused process group id is never signalled."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and (since is None or proc.create_time() >= since - 0.01):
                members.append(proc)
    return members


def _stop_host(pid: int, started: float | None) -> None:
    """SIGTERM the host, its descendants and its process group; SIGKILL whatever outlives the grace."""
    family: dict[int, psutil.Process] = {}
    proc = _process(pid, started)
    if proc is not None:
        family[proc.pid] = proc
        with contextlib.suppress(psutil.NoSuchProcess):
            family.update({c.pid: c for c in proc.children(recursive=True)})
    family.update({m.pid: m for m in _group_members(pid, started)})
    procs = list(family.values())
    _signal_all(procs, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=HOST_STOP_GRACE_S)
    _signal_all(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)
    _reap(pid)


def _stop_azurite(pid: int, started: float | None) -> None:
    if _process(pid, started) is not None:
        stop_pid(pid, AZURITE_STOP_GRACE_S)
    _reap(pid)


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=10)


def _stop_emulator(pid: int, started: float | None) -> None:
    """SIGTERM: the local cloud removes the stack's machines before it exits."""
    proc = _process(pid, started)
    if proc is not None:
        proc.terminate()
        _, alive = psutil.wait_procs([proc], timeout=EMULATOR_STOP_GRACE_S)
        _signal_all(alive, signal.SIGKILL)
    _reap(pid)


def _stop_processes(endpoint: Endpoint) -> None:
    if endpoint.pids.get("host"):
        _stop_host(endpoint.pids["host"], endpoint.started.get("host"))
    if endpoint.pids.get("emulator"):
        _stop_emulator(endpoint.pids["emulator"], endpoint.started.get("emulator"))
    if endpoint.pids.get("azurite"):
        _stop_azurite(endpoint.pids["azurite"], endpoint.started.get("azurite"))


def stop_stack(state_dir: Path | str) -> None:
    """Stop the stack under `state_dir` (a no-op when it is down); the endpoint file keeps the owner's token."""
    state_dir = Path(state_dir).resolve()
    endpoint = read_endpoint_file(state_dir)
    if endpoint is None:
        return
    _stop_processes(endpoint)
    if endpoint.topology == MACHINES:
        remove_network(ensure_network(cloud_topology.stack_id_of(state_dir)))
    endpoint.pids, endpoint.started = {}, {}
    write_endpoint_file(state_dir, endpoint)
