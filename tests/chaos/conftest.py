"""Chaos fixtures: a fresh local stack per test (faults are injected into its processes, so no test
shares one), in the process topology or, for the machine that is killed, the machine topology.

`Chaos` is the end-to-end tests' `Stack` with what the faults need: the run log on the share, jobs
that record their runs there, the pids of the stack's processes and nodes, and the wait for the
cluster to be back at its target.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from azure.mgmt.batchai import models

from shared.localstack.stack import start_stack, stop_stack
from tests.chaos.runs import TERMINAL, RunLog, job_command, output_directories
from tests.e2e.conftest import MACHINES, PROCESSES, Stack, _skip_loudly, wait_until

# Every chaos job may be requeued several times by the faults: retries are not what these tests are about.
MAX_RETRIES = 10


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Chaos(Stack):
    def run_log(self) -> RunLog:
        here, on_nodes = self.scratch("runs")
        # Made here, writable by all: each job runs as an account of its own, and a log that the first
        # job created would refuse the others' lines until the share's modes are next presented (on
        # machines, the share is a bind mount: modes are what they are here).
        here.chmod(0o777)
        (here / "runs.log").touch()
        (here / "runs.log").chmod(0o666)
        return RunLog(here / "runs.log", f"{on_nodes}/runs.log")

    def setup(self, ws: str, exp: str, cluster: str, nodes: int, timeout: float = 300) -> None:
        self.workspace(ws)
        self.client.experiments.begin_create(self.rg, ws, exp).result()
        self.manual_cluster(ws, cluster, nodes)
        self.idle_nodes(ws, cluster, nodes, timeout=timeout)

    def recorded_job(self, ws: str, exp: str, cluster: str, name: str, log: RunLog, ticks: int,
                     first_ticks: int | None = None) -> None:
        """Submit (and wait only for the creation to be acknowledged) a job that records its runs."""
        self.client.jobs.begin_create(self.rg, ws, exp, name,
                                      self.job_parameters(ws, cluster, name, log, ticks, first_ticks))

    def job_parameters(self, ws: str, cluster: str, name: str, log: RunLog, ticks: int,
                       first_ticks: int | None = None) -> models.JobCreateParameters:
        command = job_command(log.on_node, name, ticks, first_ticks)
        return models.JobCreateParameters(
            cluster=models.ResourceId(id=self.cluster_id(ws, cluster)),
            std_out_err_path_prefix="$AZ_BATCHAI_JOB_TEMP", output_directories=output_directories(),
            custom_toolkit_settings=models.CustomToolkitSettings(command_line=command))

    def all_ended(self, ws: str, exp: str, names: list[str], timeout: float = 300) -> None:
        def ended() -> bool:
            states = {j.name: j.execution_state for j in self.client.jobs.list_by_experiment(self.rg, ws, exp)}
            return all(states.get(n) in TERMINAL for n in names)
        wait_until(ended, timeout, interval=0.5, what=f"{len(names)} jobs to end")

    def back_at_target(self, ws: str, cluster: str, target: int, timeout: float = 300) -> None:
        """The cluster is steady with `target` idle nodes, and (processes) exactly that many agents run."""
        def settled() -> bool:
            c = self.client.clusters.get(self.rg, ws, cluster)
            counts = c.node_state_counts
            if not (c.allocation_state == "steady" and c.current_node_count == target
                    and counts.idle_node_count == target):
                return False
            return self.topology != PROCESSES or len(self.live_agents(ws, cluster)) == target
        wait_until(settled, timeout, interval=0.5, what=f"{cluster} to be back at {target} idle nodes")

    # --- processes ------------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        from shared.localstack.stack import read_endpoint

        endpoint = read_endpoint(self.state_dir)
        assert endpoint is not None
        return dict(endpoint.pids)

    def live_agents(self, ws: str, cluster: str) -> dict[str, int]:
        """node id -> agent pid of the cluster's local nodes whose agent runs (read from their records)."""
        key = self.cluster_key(ws, cluster)
        found = {}
        for path in (self.state_dir / "nodes").glob("*/instance.json"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                record = json.loads(path.read_text())
                if record["cluster"] == key and record["state"] == "running" and alive(record["pid"]):
                    found[path.parent.name] = int(record["pid"])
        return found

    def agent_pid(self, node_id: str) -> int:
        return int(json.loads((self.state_dir / "nodes" / node_id / "instance.json").read_text())["pid"])


def _own_stack(state: Path, topology: str) -> Iterator[Chaos]:
    endpoint = start_stack(state, fixed_ports=False, topology=topology,
                           settings={"BATCHAI_MAX_RETRIES": str(MAX_RETRIES)})
    try:
        yield Chaos({**endpoint.to_dict(), "state_dir": str(state), "max_retries": MAX_RETRIES})
    finally:
        stop_stack(state)


@pytest.fixture()
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    """A local stack (processes) of the test's own."""
    yield from _own_stack(tmp_path / "stack", PROCESSES)


@pytest.fixture()
def machine_chaos(tmp_path: Path) -> Iterator[Chaos]:
    """A local stack in the machine topology of the test's own (skipped loudly where podman cannot start)."""
    try:
        info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        _skip_loudly("podman is not installed")
    if info.returncode != 0:
        _skip_loudly(f"podman cannot start here: {info.stderr.strip()}")
    yield from _own_stack(tmp_path / "stack", MACHINES)
