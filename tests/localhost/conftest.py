"""Fixtures for the local trigger host: the host as a real process serving tests/localhost/sample_app.py
against the session's Azurite, and a reader of what the sample app's functions recorded."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.localstack.azurite import free_port
from tests.polling import wait_until  # noqa: F401 - shared by this package's tests

ROOT = Path(__file__).resolve().parents[2]
HOST_JSON = Path(__file__).with_name("host.json")


class SampleHost:
    """One `python -m shared.localhost` process running the sample app; restartable with the same state."""

    def __init__(self, conn: str, state_dir: Path, env: dict[str, str], host_id: str) -> None:
        self.conn = conn
        self.state_dir = state_dir
        self.records_file = state_dir / "records.jsonl"
        self.env = {**os.environ, "AzureWebJobsStorage": conn, "SAMPLE_RECORD_FILE": str(self.records_file),
                    "SAMPLE_QUEUE": "sample-work", "SAMPLE_CONTAINER": "sample-blobs",
                    "SAMPLE_TIMER_SCHEDULE": "0 0 0 1 1 *", **env}
        self.host_id = host_id
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self.state_dir / "tls" / "ca.pem")

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def start(self) -> SampleHost:
        log = open(self.state_dir / "host.out", "ab")  # noqa: SIM115 - the child owns the handle
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.localhost", "--app", "tests.localhost.sample_app",
             "--port", str(self.port), "--state-dir", str(self.state_dir), "--host-json", str(HOST_JSON),
             "--host-id", self.host_id, "--blob-scan-interval", "0.3", "--shutdown-grace", "5"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def answers() -> bool:
            assert self.process and self.process.poll() is None, f"host exited: {self.output()}"
            try:
                r = httpx.get(f"{self.url}/api/hello/ready", verify=self.tls_context(), timeout=2)
                return r.status_code == 200
            except (httpx.HTTPError, OSError):
                return False

        wait_until(answers, 60, "the sample host to answer over https")
        return self

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def output(self) -> str:
        path = self.state_dir / "host.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def records(self, fn: str | None = None, **match: Any) -> list[dict[str, Any]]:
        if not self.records_file.exists():
            return []
        rows = [json.loads(line) for line in self.records_file.read_text().splitlines() if line.strip()]
        return [r for r in rows if (fn is None or r["fn"] == fn) and all(r.get(k) == v for k, v in match.items())]


@pytest.fixture
def sample_host_factory(storage_conn: str, tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[Callable[..., SampleHost]]:
    hosts: list[SampleHost] = []

    def make(env: dict[str, str] | None = None, state_dir: Path | None = None,
             host_id: str | None = None) -> SampleHost:
        host = SampleHost(storage_conn, state_dir or tmp_path_factory.mktemp("host"), env or {},
                          host_id or f"sample-{uuid.uuid4().hex[:8]}")
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        if host.process is not None:
            host.stop()


@pytest.fixture(scope="module")
def sample_host(storage_conn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleHost]:
    """A host whose timer fires every second and takes 1.5 s per tick (to show ticks never overlap)."""
    host = SampleHost(storage_conn, tmp_path_factory.mktemp("host"),
                      {"SAMPLE_TIMER_SCHEDULE": "*/1 * * * * *", "SAMPLE_TIMER_WORK_S": "1.5"}, "sample-main")
    host.start()
    yield host
    assert host.stop() == 0, host.output()
