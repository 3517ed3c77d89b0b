"""Fixtures of the Azure provider tests: the ARM emulator and the real SDK clients pointed at it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.adapters.azure_clients import ArmTransport, AzureClients, StaticTokenCredential
from shared.emulator.arm import ArmEmulator


@pytest.fixture(scope="session")
def arm_tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("arm")


@pytest.fixture
def arm(arm_tls_dir: Path) -> Iterator[ArmEmulator]:
    emulator = ArmEmulator(arm_tls_dir).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def clients(arm: ArmEmulator) -> AzureClients:
    # Real retry policy with a small backoff; Retry-After from the server still wins.
    transport = ArmTransport(base_url=arm.url, connection_verify=arm.ca_file, retry_backoff_factor=0.01,
                             polling_interval=0.01)
    return AzureClients.build(StaticTokenCredential("fake-arm-token"), arm.subscription_id, transport)


@pytest.fixture(scope="session")
def cloud_config_schema() -> Callable[[str, Path], subprocess.CompletedProcess[str]]:
    """`cloud-init schema --config-file` on a rendered document (Debian package cloud-init)."""
    binary = shutil.which("cloud-init")
    if binary is None:
        pytest.skip("SKIPPED LOUDLY: the cloud-init binary is missing here; `apt-get install -y cloud-init` "
                    "to validate the rendered user data against cloud-init's schema")

    def check(text: str, directory: Path) -> subprocess.CompletedProcess[str]:
        path = directory / "user-data.yaml"
        path.write_text(text)
        return subprocess.run([binary, "schema", "--config-file", str(path)], capture_output=True, text=True,
                              timeout=120)

    return check
