"""Starting and stopping Azurite (npm, pinned in package.json) for the local stack and the tests, and
telling whether its last run under a location stopped cleanly.

Azurite keeps tables, queue messages and blob metadata in memory and saves them to its location
every 5 s (its LokiJS autosave, hard-coded), and once more when it stops on SIGTERM. A process that
dies otherwise (kill -9, power loss) loses what it acknowledged after its last save. Every start
leaves a marker (`MARKER`) in the location that only a clean stop removes; `start_azurite` finds a
marker left by a process that is gone and says what may be lost (`Azurite.unclean`).

Telemetry is off: Azurite would otherwise send it to the internet, and wait up to two minutes for
it at exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from shared.config import AZURITE_ACCOUNT, AZURITE_KEY, azurite_connection_string

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"
MARKER = "batchai-running.json"  # {"pid", "created", "startedAt"}: present while a process serves the location
AUTOSAVE_S = 5.0  # Azurite's LokiJS autosave interval (not configurable)
STOP_GRACE_S = 30.0  # it exits within a second of SIGTERM; the SIGKILL after this is a last resort
DATABASES = "__azurite_db_*__.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class Azurite:
    process: subprocess.Popen[bytes] | None  # None: a running Azurite this process did not start
    blob_port: int
    queue_port: int
    table_port: int
    host: str = "127.0.0.1"
    accounts: dict[str, str] = field(default_factory=lambda: {AZURITE_ACCOUNT: AZURITE_KEY})  # name -> key
    location: Path | None = None
    pid: int = 0
    unclean: str | None = None  # what the previous run under this location may have lost, when it died

    def __post_init__(self) -> None:
        if self.process is not None and not self.pid:
            self.pid = self.process.pid

    @property
    def connection_string(self) -> str:
        """The connection string of its first account."""
        return self.account_connection_string(next(iter(self.accounts)))

    def account_connection_string(self, account: str) -> str:
        return azurite_connection_string(self.host, self.blob_port, self.queue_port, self.table_port, account,
                                         self.accounts[account])

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """SIGTERM (Azurite saves and exits); True when it stopped so, False when it had to be killed."""
        clean = stop_azurite(self.pid, self.location, grace_s)
        if self.process is not None:
            self.process.wait(timeout=10)
        return clean


def stop_pid(pid: int, grace_s: float = 2.0) -> bool:
    """SIGTERM, then SIGKILL after the grace. True when the process exited on SIGTERM (or was gone)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


def _running(pid: int) -> bool:
    """Alive and not a zombie (a child this process has not reaped yet has exited all the same)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_azurite(pid: int, location: Path | None, grace_s: float = STOP_GRACE_S) -> bool:
    """Stop the Azurite `pid` serving `location`; its marker goes only when it saved and exited on SIGTERM."""
    clean = stop_pid(pid, grace_s)
    if clean and location is not None:
        marker = _read_marker(location)
        if marker is not None and marker.get("pid") == pid:
            (location / MARKER).unlink(missing_ok=True)
    return clean


def _read_marker(location: Path) -> dict[str, object] | None:
    try:
        return dict(json.loads((location / MARKER).read_text()))
    except (FileNotFoundError, ValueError):
        return None


def _marker_process(marker: dict[str, object]) -> psutil.Process | None:
    """The process the marker names, when it still runs (never a reused pid)."""
    try:
        proc = psutil.Process(int(str(marker.get("pid"))))
        created = marker.get("created")
        if isinstance(created, float | int) and abs(proc.create_time() - created) > 0.05:
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except (psutil.NoSuchProcess, ValueError):
        return None


def last_save(location: Path) -> datetime | None:
    """When Azurite last wrote its databases under `location` (None: never)."""
    times = [p.stat().st_mtime for p in location.glob(DATABASES)]
    return datetime.fromtimestamp(max(times), UTC) if times else None


def unclean_notice(location: Path, marker: dict[str, object]) -> str:
    """What may be lost when the Azurite the marker names stopped without saving."""
    saved = last_save(location)
    when = (f"its last save was at {saved:%Y-%m-%d %H:%M:%S} UTC, so what it acknowledged after that "
            f"(at most {AUTOSAVE_S:g} s of writes) is lost" if saved else
            "it never saved, so everything written to it is lost")
    return (f"Storage did not stop cleanly: Azurite (pid {marker.get('pid')}, started {marker.get('startedAt')}) "
            f"ended without saving. It keeps tables, queue messages and blob metadata in memory and saves them "
            f"every {AUTOSAVE_S:g} s; {when}: resources created, changed or deleted (workspaces, clusters, jobs "
            f"and their states), queue messages sent or deleted (a deleted one comes back), and blobs written "
            f"(their contents may remain on disk, unlisted).")


def start_azurite(location: Path, blob_port: int = 0, queue_port: int = 0, table_port: int = 0,
                  log: Path | None = None, timeout_s: float = 30.0, host: str = "127.0.0.1",
                  accounts: dict[str, str] | None = None, access_log: bool = False) -> Azurite:
    """Azurite on `host`, with Azure's development account or, given `accounts` (name -> base64
    key), exactly those accounts (`AZURITE_ACCOUNTS`: the development key then opens nothing).
    access_log: one line per request in `log` (benchmarks count storage calls with it)."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run `npm ci` in {ROOT}")
    location.mkdir(parents=True, exist_ok=True)
    previous = _read_marker(location)
    if previous is not None and _marker_process(previous) is not None:
        raise RuntimeError(f"Azurite pid {previous.get('pid')} already serves {location}")
    unclean = unclean_notice(location, previous) if previous is not None else None
    ports = [blob_port or free_port(), queue_port or free_port(), table_port or free_port()]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns the handle
    env = dict(os.environ)
    env.pop("AZURITE_ACCOUNTS", None)
    if accounts:
        env["AZURITE_ACCOUNTS"] = ";".join(f"{name}:{key}" for name, key in accounts.items())
    process = subprocess.Popen(
        [str(AZURITE_BIN), *([] if access_log else ["--silent"]), "--skipApiVersionCheck", "--loose",
         "--disableProductStyleUrl", "--disableTelemetry", "--location", str(location),
         "--blobHost", host, "--blobPort", str(ports[0]),
         "--queueHost", host, "--queuePort", str(ports[1]),
         "--tableHost", host, "--tablePort", str(ports[2])],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    deadline = time.monotonic() + timeout_s
    while not all(_port_open(p, host) for p in ports):
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            stop_pid(process.pid)
            raise RuntimeError("Azurite did not start listening in time")
        time.sleep(0.05)
    _write_marker(location, process.pid)
    return Azurite(process, *ports, host=host, accounts=dict(accounts or {AZURITE_ACCOUNT: AZURITE_KEY}),
                   location=location, unclean=unclean)


def _write_marker(location: Path, pid: int) -> None:
    marker = {"pid": pid, "created": psutil.Process(pid).create_time(),
              "startedAt": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
    tmp = location / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker))
    os.replace(tmp, location / MARKER)
