"""Container groups run for real with podman behind the ARM emulator, driven by the real ACI provider
(azure-mgmt-containerinstance over https): exit codes, logs, secure environment, Azure Files
shares as the emulated share directories, labels, deletion."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.azure_clients import ArmTransport, AzureClients, StaticTokenCredential
from shared.adapters.compute.aci import AciProvider, container_task, group_name
from shared.adapters.compute.capabilities import ContainerTask, TaskStatus
from shared.adapters.local_paths import fileshare_dir
from shared.emulator.arm import ArmEmulator, ContainerGroupBackend
from shared.emulator.arm.podman_groups import PodmanContainerGroups
from tests.azure.helpers import SUBSCRIPTION, azure_settings, cluster_spec
from tests.polling import wait_until

pytestmark = pytest.mark.podman

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/busybox:test"
SHARE = {"accountName": "UserFiles", "azureFileUrl": "https://userfiles.file.core.windows.net/Data",
         "credentials": {"accountKey": "U0hBUkVLRVk="}, "relativeMountPath": "afs"}


@pytest.fixture(scope="module")
def busybox() -> str:
    """localhost/busybox:test built; skips (saying why) where podman cannot run."""
    try:
        info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120)
        reason = info.stderr.strip() if info.returncode != 0 else ""
    except FileNotFoundError:
        reason = "podman is not installed"
    if reason:
        print(f"\nSKIPPING podman container group tests: podman cannot start here: {reason}", file=sys.stderr)
        pytest.skip(f"podman cannot start here: {reason}")
    build = subprocess.run(["bash", str(REPO / "tests" / "fixtures" / "images" / "build-busybox.sh"), IMAGE],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    return IMAGE


@pytest.fixture
def stack_id() -> Iterator[str]:
    stack = f"t{uuid.uuid4().hex[:8]}"
    yield stack
    left = subprocess.run(["podman", "ps", "-a", "-q", "--filter", f"label=batchai.stack={stack}"],
                          capture_output=True, text=True, timeout=60).stdout.split()
    if left:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *left], capture_output=True, timeout=120)


@pytest.fixture
def groups(tmp_path: Path, stack_id: str, busybox: str) -> PodmanContainerGroups:
    return PodmanContainerGroups(tmp_path / "state", stack_id)


@pytest.fixture
def arm(tmp_path: Path, groups: PodmanContainerGroups) -> Iterator[ArmEmulator]:
    emulator = ArmEmulator(tmp_path / "arm", SUBSCRIPTION, container_groups=groups).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def provider(arm: ArmEmulator) -> AciProvider:
    transport = ArmTransport(base_url=arm.url, connection_verify=arm.ca_file, retry_backoff_factor=0.01)
    clients = AzureClients.build(StaticTokenCredential("arm-token"), SUBSCRIPTION, transport)
    return AciProvider(clients, azure_settings())


def task(task_id: str, command: str, image: str = IMAGE, **job: object) -> ContainerTask:
    cluster = cluster_spec("STANDARD_D2S_V3", "dedicated", name="aci",
                           nodeSetup={"mountVolumes": {"azureFileShares": [SHARE]}})
    settings = {"containerSettings": {"imageSourceRegistry": {"image": image}}, **job}
    return container_task(task_id, cluster, "sub|demo|ws|exp|job", settings, command, {})


def finished(provider: AciProvider, task_id: str) -> TaskStatus | None:
    status = provider.task_status(task_id)
    return status if status.state in ("succeeded", "failed") else None


def inspect(name: str) -> dict:
    done = subprocess.run(["podman", "container", "inspect", name], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]


def test_a_group_runs_its_container_to_the_end(provider: AciProvider, groups: PodmanContainerGroups,
                                               arm: ArmEmulator, stack_id: str) -> None:
    assert isinstance(groups, ContainerGroupBackend)
    t = task("asg-exit3", 'echo hi; test "$API_TOKEN" = "$(echo czNjcjN0 | base64 -d)" || exit 9; exit 3',
             secrets=[{"name": "API_TOKEN", "value": "s3cr3t"}])
    provider.run_task(t)
    status = wait_until(lambda: finished(provider, t.task_id), what="the group to terminate")
    assert (status.state, status.exit_code) == ("failed", 3)  # 3, not 9: the secure value reached the container
    assert provider.fetch_logs(t.task_id) == "hi\n"

    gets = [r for r in arm.requests("GET") if r.path.endswith(f"containerGroups/{group_name(t.task_id)}")]
    group = gets[-1].response
    current = group["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]
    assert current["state"] == "Terminated" and current["exitCode"] == 3 and current["detailStatus"] == "Error"
    assert current["startTime"] <= current["finishTime"] and current["finishTime"].endswith("Z")
    assert group["properties"]["instanceView"]["state"] == "Failed" and "s3cr3t" not in json.dumps(group)

    [name] = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter",
                             f"label=batchai.stack={stack_id}"], capture_output=True, text=True).stdout.split()
    seen = inspect(name)
    assert seen["Config"]["Labels"]["batchai.role"] == "aci"
    assert seen["Config"]["Labels"]["batchai.group"] == group["id"].lower()
    assert "s3cr3t" not in " ".join(seen["Config"].get("CreateCommand") or [])  # never on a command line
    assert seen["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")

    provider.delete_task(t.task_id)
    wait_until(lambda: provider.task_status(t.task_id).state == "missing", what="the group to go")
    assert subprocess.run(["podman", "container", "exists", name]).returncode == 1


def test_an_azure_files_share_is_the_emulated_share_directory(provider: AciProvider, tmp_path: Path) -> None:
    share = fileshare_dir(tmp_path / "state", SHARE["accountName"], SHARE["azureFileUrl"])
    share.mkdir(parents=True)
    (share / "hello.txt").write_text("from the host\n")
    t = task("asg-share", 'cd "$AZ_BATCHAI_MOUNT_ROOT/afs" && cat hello.txt && echo back > out.txt')
    provider.run_task(t)
    status = wait_until(lambda: finished(provider, t.task_id), what="the group to terminate")
    assert (status.state, status.exit_code) == ("succeeded", 0)
    assert provider.fetch_logs(t.task_id) == "from the host\n"
    assert (share / "out.txt").read_text() == "back\n"


def test_a_group_whose_image_is_missing_fails_to_deploy(provider: AciProvider) -> None:
    t = task("asg-noimage", "true", image="localhost/no-such-image:1")
    provider.run_task(t)
    status = wait_until(lambda: finished(provider, t.task_id), what="the deployment to fail")
    assert status.state == "failed" and status.exit_code is None
    assert "localhost/no-such-image:1" in status.detail
