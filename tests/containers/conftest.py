"""A podman engine for the container tests: its Docker-API socket and the local busybox image.

Where podman cannot start, the tests that need it skip with the reason printed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from shared.agent.containers import PODMAN_SOCKET
from tests.polling import wait_until  # noqa: F401 - shared by this package's tests

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/busybox:test"
TEST_LABEL = "batchai.test"  # on every container these tests start: removed at the end of the session


def _skip_loudly(reason: str) -> None:
    print(f"\nSKIPPING container tests: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _engine_answers(base_url: str) -> bool:
    try:
        docker.DockerClient(base_url=base_url, timeout=10).ping()
        return True
    except Exception:  # any failure means: not answering
        return False


@pytest.fixture(scope="session")
def podman_url() -> Iterator[str]:
    """The Docker-API URL of a running podman with localhost/busybox:test built; skips where podman cannot run."""
    info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120) if _has_podman() else None
    if info is None or info.returncode != 0:
        _skip_loudly(f"podman cannot start here: {info.stderr.strip() if info else 'podman is not installed'}")
    if not _engine_answers(PODMAN_SOCKET):
        setup = subprocess.run(
            ["bash", str(REPO / ".ci" / "podman-setup")], capture_output=True, text=True, timeout=120
        )
        if setup.returncode != 0 or not _engine_answers(PODMAN_SOCKET):
            _skip_loudly(f"podman's Docker API did not start: {setup.stdout}{setup.stderr}")
    build = subprocess.run(
        ["bash", str(REPO / "tests" / "fixtures" / "images" / "build-busybox.sh"), IMAGE],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    yield PODMAN_SOCKET
    client = docker.DockerClient(base_url=PODMAN_SOCKET)
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}=true"}):
        container.remove(force=True)


def _has_podman() -> bool:
    return subprocess.run(["sh", "-c", "command -v podman"], capture_output=True).returncode == 0
