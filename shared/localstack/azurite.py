"""Starting and stopping Azurite (npm, pinned in package.json) for the local stack and the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shared.config import azurite_connection_string

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Azurite:
    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(blob=self.blob_port, queue=self.queue_port, table=self.table_port)

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
                  log: Path | None = None, timeout_s: float = 30.0) -> Azurite:
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run `npm ci` in {ROOT}")
    location.mkdir(parents=True, exist_ok=True)
    ports = [blob_port or free_port(), queue_port or free_port(), table_port or free_port()]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns the handle
    process = subprocess.Popen(
        [str(AZURITE_BIN), "--silent", "--skipApiVersionCheck", "--loose", "--disableProductStyleUrl",
         "--location", str(location),
         "--blobHost", "127.0.0.1", "--blobPort", str(ports[0]),
         "--queueHost", "127.0.0.1", "--queuePort", str(ports[1]),
         "--tableHost", "127.0.0.1", "--tablePort", str(ports[2])],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while not all(_port_open(p) for p in ports):
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            stop_pid(process.pid)
            raise RuntimeError("Azurite did not start listening in time")
        time.sleep(0.05)
    return Azurite(process, *ports)
