"""Starting and stopping Azurite (npm, pinned in package.json) for the local stack and the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import AZURITE_ACCOUNT, AZURITE_KEY, azurite_connection_string

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"


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
    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int
    host: str = "127.0.0.1"
    accounts: dict[str, str] = field(default_factory=lambda: {AZURITE_ACCOUNT: AZURITE_KEY})  # name -> key

    @property
    def connection_string(self) -> str:
        """The connection string of its first account."""
        return self.account_connection_string(next(iter(self.accounts)))

    def account_connection_string(self, account: str) -> str:
        return azurite_connection_string(self.host, self.blob_port, self.queue_port, self.table_port, account,
                                         self.accounts[account])

    def stop(self, grace_s: float = 2.0) -> None:
        stop_pid(self.process.pid, grace_s)
        self.process.wait(timeout=10)


def stop_pid(pid: int, grace_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after the grace: Azurite 3.37 does not stop promptly on SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_azurite(location: Path, blob_port: int = 0, queue_port: int = 0, table_port: int = 0,
                  log: Path | None = None, timeout_s: float = 30.0, host: str = "127.0.0.1",
                  accounts: dict[str, str] | None = None) -> Azurite:
    """Azurite on `host`, with Azure's development account or, given `accounts` (name -> base64
    key), exactly those accounts (`AZURITE_ACCOUNTS`: the development key then opens nothing)."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run `npm ci` in {ROOT}")
    location.mkdir(parents=True, exist_ok=True)
    ports = [blob_port or free_port(), queue_port or free_port(), table_port or free_port()]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns the handle
    env = dict(os.environ)
    env.pop("AZURITE_ACCOUNTS", None)
    if accounts:
        env["AZURITE_ACCOUNTS"] = ";".join(f"{name}:{key}" for name, key in accounts.items())
    process = subprocess.Popen(
        [str(AZURITE_BIN), "--silent", "--skipApiVersionCheck", "--loose", "--disableProductStyleUrl",
         "--location", str(location),
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
    return Azurite(process, *ports, host=host, accounts=dict(accounts or {AZURITE_ACCOUNT: AZURITE_KEY}))
