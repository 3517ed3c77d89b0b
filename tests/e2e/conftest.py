"""End-to-end fixtures: the whole local stack in either topology, and an SDK client over it.

`stack` is parametrized over the two topologies: `processes` (every node an agent process on this
machine) and `machines` (nodes are machines booted by cloud-init from the vmss provider's custom
data, on the local ARM emulator; it needs podman and skips loudly where podman cannot start). A
test that only makes sense on one of them says so with `@pytest.mark.parametrize("stack", [...],
indirect=True)`.

Clusters made with `Stack.manual_cluster` mount a file share at `$AZ_BATCHAI_MOUNT_ROOT/share`
(Batch AI's way to give nodes files): tests put scripts and scratch directories there through
`Stack.scratch`, which answers the path on this machine and the path nodes see.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.batchai import BatchAI, models

from shared.adapters import local_paths
from shared.adapters.azure_clients import ArmTransport, AzureClients, StaticTokenCredential
from shared.adapters.compute.local import LocalProvider
from shared.adapters.compute.vmss import instance_id_of, scale_set_name
from shared.config import azurite_connection_string
from shared.emulator.cloud import machine_name
from shared.localstack import cloud_topology
from tests.polling import wait_until

PROCESSES, MACHINES = "processes", "machines"
NODE_BOOT_S = 1500  # a machine's boot on a loaded host: cloud-init, the agent and its wheels
SHARE = "e2eshare"
TORCH_ENV = "/opt/torch"  # where the machines' setup task installs torch from the service's wheelhouse


class StaticToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def _conn_parts(conn: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in conn.split(";") if "=" in p)


class Stack:
    def __init__(self, endpoint: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.topology = endpoint.get("topology", PROCESSES)
        # The stack's retry limit: the process stack inherits this environment; the machine stack sets it.
        self.max_retries = int(endpoint.get("max_retries") or os.environ.get("BATCHAI_MAX_RETRIES", "3"))
        self.state_dir = Path(endpoint["state_dir"])
        self.rg = endpoint["resource_group"]
        self.sub = endpoint["subscription_id"]
        self.client = BatchAI(StaticToken(endpoint["token"]), self.sub,
                              base_url=endpoint["url"], connection_verify=endpoint["ca_file"])
        parts = _conn_parts(endpoint["storage_connection_string"])
        self.account, self.account_key = parts["AccountName"], parts["AccountKey"]
        self.share_url = f"https://{self.account}.file.core.windows.net/{SHARE}"
        self.share_dir = local_paths.fileshare_dir(self.state_dir, self.account, self.share_url)
        self.share_dir.mkdir(parents=True, exist_ok=True)

    @property
    def service_conn(self) -> str:
        """The connection string of the service's own state (tables, queues): on processes, the one account;
        on machines, the service account, which no machine holds a key of."""
        if self.topology == PROCESSES:
            return str(self.endpoint["storage_connection_string"])
        accounts = json.loads((self.state_dir / "local" / "accounts.json").read_text())
        ports = self.endpoint["ports"]
        host = self.endpoint["url"].split("//", 1)[1].rsplit(":", 1)[0]
        return azurite_connection_string(host, ports["blob"], ports["queue"], ports["table"],
                                         cloud_topology.SERVICE_ACCOUNT, str(accounts[cloud_topology.SERVICE_ACCOUNT]))

    # --- what nodes run ------------------------------------------------------------------------
    @property
    def python(self) -> str:
        """The interpreter job commands name on a node."""
        return sys.executable if self.topology == PROCESSES else "/usr/bin/python3"

    @property
    def torch_python(self) -> str:
        return sys.executable if self.topology == PROCESSES else f"{TORCH_ENV}/bin/python"

    def scratch(self, name: str) -> tuple[Path, str]:
        """A new directory on the cluster share: (its path here, its path on nodes)."""
        unique = f"{name}-{uuid.uuid4().hex[:8]}"
        (self.share_dir / unique).mkdir(parents=True)
        return self.share_dir / unique, f"$AZ_BATCHAI_MOUNT_ROOT/share/{unique}"

    def share_volumes(self) -> models.MountVolumes:
        return models.MountVolumes(azure_file_shares=[models.AzureFileShareReference(
            account_name=self.account, azure_file_url=self.share_url, relative_mount_path="share",
            credentials=models.AzureStorageCredentialsInfo(account_key=self.account_key))])

    # --- resources -----------------------------------------------------------------------------
    def cluster_id(self, ws: str, cluster: str) -> str:
        return (f"/subscriptions/{self.sub}/resourceGroups/{self.rg}/providers/Microsoft.BatchAI"
                f"/workspaces/{ws}/clusters/{cluster}")

    def cluster_key(self, ws: str, cluster: str) -> str:
        return f"{self.sub}|{self.rg}|{ws}|{cluster}".lower()

    def workspace(self, ws: str) -> None:
        self.client.workspaces.begin_create(self.rg, ws, models.WorkspaceCreateParameters(location="local")).result()

    def manual_cluster(self, ws: str, name: str, nodes: int, torch: bool = False, **kwargs: Any) -> None:
        """A cluster of `nodes` nodes that mounts the share; with `torch`, machines install torch at setup."""
        setup = None
        if torch and self.topology == MACHINES:
            setup = models.SetupTask(
                command_line=f"python3 -m venv {TORCH_ENV} && {TORCH_ENV}/bin/pip install --quiet --no-index "
                             f"--find-links /opt/batchai/wheelhouse torch",
                std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/share/setup")
        kwargs.setdefault("node_setup", models.NodeSetup(mount_volumes=self.share_volumes(), setup_task=setup))
        self.client.clusters.begin_create(self.rg, ws, name, models.ClusterCreateParameters(
            vm_size="STANDARD_D1_V2",
            scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=nodes)),
            user_account_settings=models.UserAccountSettings(admin_user_name="demo", admin_user_password="x"),
            **kwargs)).result()

    def idle_nodes(self, ws: str, cluster: str, count: int, timeout: float = NODE_BOOT_S) -> None:
        def ready() -> bool:
            c = self.client.clusters.get(self.rg, ws, cluster)
            return (c.node_state_counts.idle_node_count or 0) >= count
        wait_until(ready, timeout, what=f"{count} idle nodes on {cluster}")

    def submit(self, ws: str, exp: str, job: str, cluster: str, command: str, **kwargs: Any) -> None:
        params = models.JobCreateParameters(
            cluster=models.ResourceId(id=self.cluster_id(ws, cluster)),
            std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/logs",
            custom_toolkit_settings=models.CustomToolkitSettings(command_line=command), **kwargs)
        self.client.jobs.begin_create(self.rg, ws, exp, job, params).result()

    def wait_job(self, ws: str, exp: str, job: str, timeout: float = 900) -> models.Job:
        def ended() -> models.Job | None:
            j = self.client.jobs.get(self.rg, ws, exp, job)
            return j if j.execution_state in ("succeeded", "failed") else None
        return wait_until(ended, timeout, what=f"job {job} to end")

    def output_files(self, ws: str, exp: str, job: str, directory_id: str = "stdouterr",
                     directory: str = ".") -> dict[str, models.File]:
        files = self.client.jobs.list_output_files(
            self.rg, ws, exp, job, models.JobsListOutputFilesOptions(outputdirectoryid=directory_id,
                                                                     directory=directory))
        return {f.name: f for f in files}

    def download(self, url: str) -> str:
        r = httpx.get(url, timeout=30)
        r.raise_for_status()
        return r.text

    # --- faults --------------------------------------------------------------------------------
    def kill_node(self, ws: str, cluster: str, node_id: str) -> None:
        """The node dies at once: its agent is killed -9 (processes), its machine is killed (machines)."""
        if self.topology == PROCESSES:
            record = json.loads((self.state_dir / "nodes" / node_id / "instance.json").read_text())
            os.kill(int(record["pid"]), signal.SIGKILL)
            return
        subprocess.run(["podman", "kill", self.machine(ws, cluster, node_id)], check=True, capture_output=True)

    def evict(self, ws: str, cluster: str, node_id: str) -> None:
        """A low-priority node's eviction: the simulated notice (processes) or Azure's simulateEviction
        through the real compute SDK (machines: Scheduled Events Preempt first, then the VM goes)."""
        if self.topology == PROCESSES:
            assert LocalProvider(self.state_dir, self.endpoint["storage_connection_string"]).preempt(node_id)
            return
        key = self.cluster_key(ws, cluster)
        self.compute().virtual_machine_scale_set_vms.simulate_eviction(
            cloud_topology.COMPUTE_RESOURCE_GROUP, scale_set_name(key), instance_id_of(node_id))

    def machine(self, ws: str, cluster: str, node_id: str) -> str:
        """The podman container that is this node's machine."""
        name = f"{scale_set_name(self.cluster_key(ws, cluster))}_{instance_id_of(node_id)}"
        return machine_name(cloud_topology.stack_id_of(self.state_dir), _Named(name))

    def compute(self) -> Any:
        cloud = self.cloud()
        transport = ArmTransport(base_url=cloud["arm"], connection_verify=cloud["arm_ca_file"],
                                 retry_backoff_factor=0.05, polling_interval=0.2)
        return AzureClients.build(StaticTokenCredential("local-cloud"), self.sub, transport).compute

    def cloud(self) -> dict[str, Any]:
        from shared.emulator.__main__ import ready_path

        return dict(json.loads(ready_path(self.state_dir).read_text()))


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def _skip_loudly(reason: str) -> None:
    print(f"\nSKIPPING the machine topology: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cloud_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole local stack in the machine topology, in its own state directory and network."""
    from shared.localstack.stack import start_stack, stop_stack

    try:
        info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        _skip_loudly("podman is not installed")
    if info.returncode != 0:
        _skip_loudly(f"podman cannot start here: {info.stderr.strip()}")
    state = tmp_path_factory.mktemp("cloud")
    # One retry: each preemption on machines costs a machine's boot, and the preemption test needs retries + 1.
    endpoint = start_stack(state, fixed_ports=False, topology=MACHINES, settings={"BATCHAI_MAX_RETRIES": "1"})
    try:
        yield {**endpoint.to_dict(), "state_dir": str(state), "max_retries": 1}
    finally:
        stop_stack(state)


@pytest.fixture(scope="session", params=[PROCESSES, MACHINES])
def stack(request: pytest.FixtureRequest) -> Stack:
    name = "local_stack" if request.param == PROCESSES else "cloud_stack"
    return Stack(request.getfixturevalue(name))


WS, EXP = "e2e", "jobs"


@pytest.fixture(scope="session")
def two_nodes(stack: Stack) -> Stack:
    """Workspace e2e, experiment `jobs` and a 2-node cluster `two` that mounts the share and has torch."""
    stack.workspace(WS)
    stack.client.experiments.begin_create(stack.rg, WS, EXP).result()
    stack.manual_cluster(WS, "two", 2, torch=True)
    stack.idle_nodes(WS, "two", 2)
    return stack
