"""Runs task plans for real: each node's command under bash, with the env the node agent would give it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.decisions.toolkits import TaskPlan

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def stdouterr_dir(job_temp: Path, rank: int) -> Path:
    """Where a node's processes with their own output files write them."""
    return job_temp / f"node-{rank}" / "stdouterr"


def start_plan(plan: TaskPlan, rank: int, job_temp: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a node's command as the process runtime does: bash -c, agent variables, then the plan's env."""
    assert plan.command is not None
    node_temp = job_temp / f"node-{rank}"
    node_temp.mkdir(parents=True, exist_ok=True)
    stdouterr = stdouterr_dir(job_temp, rank)
    stdouterr.mkdir(exist_ok=True)
    agent_env = {"AZ_BATCHAI_TASK_INDEX": str(rank), "AZ_BATCHAI_JOB_TEMP": str(node_temp),
                 "AZ_BATCHAI_STDOUTERR_DIR": str(stdouterr)}
    env = {**os.environ, **agent_env, **(extra_env or {}), **plan.env}
    return subprocess.Popen(
        ["bash", "-c", plan.command],
        env=env,
        cwd=node_temp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def run_plans(tmp_path: Path) -> Callable[..., list[tuple[int, str, str]]]:
    """Run the plans of every node with a command at once; (exit code, stdout, stderr) per node."""

    def run(plans: list[TaskPlan], timeout: float = 120, extra_env: dict[str, str] | None = None):
        procs = [start_plan(p, rank, tmp_path, extra_env) for rank, p in enumerate(plans) if p.command is not None]
        results = []
        try:
            for proc in procs:
                out, err = proc.communicate(timeout=timeout)
                results.append((proc.returncode, out, err))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return results

    return run
