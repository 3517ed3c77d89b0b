"""`batchai node join`: make this Linux machine a node of a bring-your-own cluster.

Steps: exchange the join token for the node's credential (``POST /nodeagent/join``); write the agent's
config and the node token (0600) under the install directory; install the agent from the service's
wheelhouse (the wheels machines boot with, fetched with the node's read-only SAS) into a venv there,
or, when the service publishes none, run the agent of this very installation; start it as a systemd
service where systemd runs (`batchai-node.service`), else as a detached process (its pid in
``agent.pid``); wait until the node registered. Joining again replaces the node's credential and
restarts its agent. Needs no account key and nothing but the service's URL and the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import httpx
import psutil
import typer

from shared.agent.joined import CONFIG, NODE_TOKEN, REFUSED_EXIT
from shared.cli.context import CliError
from shared.cli.output import message

UNIT = "batchai-node.service"
UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
REGISTERED = ("preparing", "idle", "running")
MODES = ("auto", "systemd", "process")


def _verify(ca_file: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def _client(endpoint: str, ca_file: str | None) -> httpx.Client:
    return httpx.Client(base_url=endpoint.rstrip("/"), verify=_verify(ca_file), timeout=30)


def _post(http: httpx.Client, path: str, bearer: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        r = http.post(path, json=body, headers={"Authorization": f"Bearer {bearer}"})
    except httpx.TransportError as error:
        raise CliError(f"cannot reach the service at {http.base_url}: {error}") from error
    if r.status_code != 200:
        try:
            error = r.json()["error"]
            text = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            text = r.text[:500]
        raise CliError(f"{path} answered {r.status_code}: {text}")
    answer: dict[str, Any] = r.json()
    return answer


def _own_address(endpoint: str) -> str:
    """The address this machine reaches the service from (a UDP connect sends nothing)."""
    url = urlparse(endpoint)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((url.hostname or "127.0.0.1", url.port or 443))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _ca_bundle(install: Path, ca_file: str | None) -> str:
    """The CAs the agent trusts: the system's plus the service's own (a private CA), in one file."""
    if not ca_file:
        return ""
    parts = [SYSTEM_CA.read_text()] if SYSTEM_CA.exists() else []
    parts.append(Path(ca_file).read_text())
    bundle = install / "ca.pem"
    bundle.write_text("\n".join(parts))
    return str(bundle)


def _install_agent(http: httpx.Client, install: Path, joined: dict[str, Any], ca_file: str | None) -> str:
    """The Python that runs the agent: a venv with the service's wheelhouse, or this installation's own."""
    grant = _post(http, "/nodeagent/credentials", joined["nodeToken"],
                  {"clusterKey": joined["clusterKey"], "nodeId": joined["nodeId"]})
    wheels = grant.get("wheelhouse") or []
    if not wheels:
        return sys.executable
    house = install / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=300, verify=_verify(ca_file)) as download:
        for wheel in wheels:
            target = house / Path(str(wheel["name"])).name
            if not target.exists():
                with download.stream("GET", str(wheel["url"])) as r:
                    r.raise_for_status()
                    with target.open("wb") as f:
                        for chunk in r.iter_bytes():
                            f.write(chunk)
    venv = install / "venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links", str(house),
                    "batchai"], check=True)
    return str(venv / "bin" / "python")


def _systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def _environment(ca_bundle: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHAI_", "AzureWebJobs"))}
    if ca_bundle:
        env.update(SSL_CERT_FILE=ca_bundle, REQUESTS_CA_BUNDLE=ca_bundle)
    return env


def _start_systemd(command: list[str], ca_bundle: str) -> None:
    environment = "".join(f'Environment="{k}={v}"\n' for k, v in
                          (("SSL_CERT_FILE", ca_bundle), ("REQUESTS_CA_BUNDLE", ca_bundle)) if v)
    unit = (f"[Unit]\nDescription=batchai node agent (bring your own)\nAfter=network-online.target\n"
            f"Wants=network-online.target\n\n[Service]\nType=simple\n{environment}"
            f"ExecStart={' '.join(command)}\nRestart=always\nRestartSec=5\nRestartPreventExitStatus={REFUSED_EXIT}\n"
            f"KillMode=mixed\n\n"
            f"[Install]\nWantedBy=multi-user.target\n")
    (UNIT_DIR / UNIT).write_text(unit)
    for args in (["daemon-reload"], ["enable", UNIT], ["restart", UNIT]):
        subprocess.run(["systemctl", *args], check=True)


def previous_agent(install: Path) -> psutil.Process | None:
    """The detached agent an earlier join of this install directory started, if it still runs (the pid
    file's process, when its command line is that agent's: a pid may have been reused since)."""
    with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
        process = psutil.Process(int((install / "agent.pid").read_text().strip()))
        if str(install / CONFIG) in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
            return process
    return None


def _stop_previous(install: Path) -> None:
    """A detached agent of an earlier join of this install directory stops (it is replaced)."""
    process = previous_agent(install)
    if process is not None:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)


def _start_process(command: list[str], install: Path, ca_bundle: str) -> subprocess.Popen[bytes]:
    _stop_previous(install)
    with (install / "agent.log").open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=_environment(ca_bundle), cwd=install, start_new_session=True)
    (install / "agent.pid").write_text(str(process.pid))
    return process


def _wait_registered(http: httpx.Client, joined: dict[str, Any], timeout_s: float,
                     process: subprocess.Popen[bytes] | None, log: Path) -> str:
    deadline = time.monotonic() + timeout_s
    body = {"clusterKey": joined["clusterKey"], "nodeId": joined["nodeId"]}
    while True:
        state = str(_post(http, "/nodeagent/node", joined["nodeToken"], body).get("state") or "")
        if state in REGISTERED:
            return state
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise CliError(f"the agent exited with code {process.returncode} before the node registered:\n{tail}")
        if time.monotonic() > deadline:
            raise CliError(f"the node did not register within {timeout_s:g} s (agent log: {log})")
        time.sleep(1.0)  # polling the service until a deadline, at most once a second


def join(
    endpoint: Annotated[str, typer.Option("--endpoint", help="The service's URL (https://...).")],
    token: Annotated[str, typer.Option("--token", help="A join token of the cluster.", envvar="BATCHAI_JOIN_TOKEN")],
    name: Annotated[str | None, typer.Option("--name", help="The node's name (default: the host name).")] = None,
    install_dir: Annotated[Path, typer.Option("--install-dir", help="Where the agent, its config and its work "
                                              "live.")] = Path("/opt/batchai-node"),
    ca_file: Annotated[str | None, typer.Option("--ca-file", help="The CA of the service's certificate, when "
                                                "it is a private one.")] = None,
    service: Annotated[str, typer.Option("--service", help="How the agent runs: auto (systemd where it runs, else "
                                         "a detached process), systemd or process.")] = "auto",
    gpus: Annotated[int | None, typer.Option("--gpus", help="GPUs the agent cannot detect itself.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the node to register.")] = 300.0,
) -> None:
    """Join this machine to a bring-your-own cluster: install and start the node agent, wait until it registered."""
    if service not in MODES:
        raise CliError(f"--service must be one of {', '.join(MODES)}")
    install = install_dir.resolve()
    install.mkdir(parents=True, exist_ok=True)
    with _client(endpoint, ca_file) as http:
        joined = _post(http, "/nodeagent/join", token, {"name": name or socket.gethostname()})
        _write_private(install / NODE_TOKEN, joined["nodeToken"])
        bundle = _ca_bundle(install, ca_file)
        config = {"clusterKey": joined["clusterKey"], "nodeId": joined["nodeId"], "serviceUrl": endpoint,
                  "caFile": bundle, "address": _own_address(endpoint), "workdir": str(install / "work"),
                  "storageEndpoints": joined.get("storageEndpoints") or {}}
        if gpus is not None:
            config["gpus"] = gpus
        (install / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        python = _install_agent(http, install, joined, ca_file)
        command = [python, "-m", "shared.agent", "--joined", str(install / CONFIG)]
        use_systemd = service == "systemd" or (service == "auto" and _systemd_runs())
        process = None
        if use_systemd:
            _start_systemd(command, bundle)
        else:
            process = _start_process(command, install, bundle)
        state = _wait_registered(http, joined, timeout, process, install / "agent.log")
    how = f"systemd unit {UNIT}" if use_systemd else f"process {process.pid if process else ''}"
    message(f"node {joined['nodeId']} joined ({state}); its agent runs as {how}; token expires {joined['expiresAt']}")
