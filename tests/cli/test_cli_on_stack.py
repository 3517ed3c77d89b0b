"""The CLI and the demo against the whole local stack: jobs really run on local nodes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from shared.cli.main import app
from tests.polling import wait_until  # noqa: F401 - shared by this package's tests

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
WS, EXP = "cli-e2e", "exp"


@pytest.fixture(scope="module")
def cli(local_stack: dict[str, Any]) -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str, check: bool = True) -> Result:
        result = runner.invoke(app, ["--state-dir", str(local_stack["state_dir"]), *args])
        if check:
            assert result.exit_code == 0, f"{args}: {result.stdout}\n{result.stderr}\n{result.exception!r}"
        return result

    run("workspace", "create", WS)
    run("experiment", "create", WS, EXP)
    run("cluster", "create", WS, "one", "--vm-size", "STANDARD_D1_V2", "--target", "1", "-u", "u", "-p", "p")
    return run


def submit(cli: Callable[..., Result], tmp_path: Path, name: str, command: str) -> None:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"properties": {"customToolkitSettings": {"commandLine": command},
                                               "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs"}}))
    cli("job", "create", WS, EXP, name, "-f", str(path), "--cluster", "one")


def test_stack_status_reports_the_running_stack(cli: Callable[..., Result], local_stack: dict[str, Any]) -> None:
    result = cli("stack", "status")
    assert local_stack["url"] in result.stdout and "up" in result.stdout


def test_stream_follows_stdout_and_wait_returns_the_exit_code(cli: Callable[..., Result], tmp_path: Path) -> None:
    submit(cli, tmp_path, "ticks", "for i in 1 2 3 4; do echo tick $i; sleep 1; done; echo bad >&2; exit 3")
    streamed = cli("job", "file", "stream", WS, EXP, "ticks", "--interval", "0.5")
    assert re.findall(r"tick \d", streamed.stdout) == ["tick 1", "tick 2", "tick 3", "tick 4"]
    assert "bad" in cli("job", "file", "stream", WS, EXP, "ticks", "-f", "stderr.txt").stdout
    waited = cli("job", "wait", WS, EXP, "ticks", "--interval", "0.5", check=False)
    assert waited.exit_code == 3, waited.stderr
    files = json.loads(cli("-o", "json", "job", "file", "list", WS, EXP, "ticks").stdout)
    assert {"stdout.txt", "stderr.txt"} <= {f["name"] for f in files}
    assert all(f["downloadUrl"] for f in files if f["fileType"] == "file")


def test_preempting_the_node_of_a_running_job_requeues_it(cli: Callable[..., Result], tmp_path: Path) -> None:
    # Long enough that the preemption lands while it runs, however loaded the machine; its second run
    # (after the requeue) takes as long.
    submit(cli, tmp_path, "long", "for i in $(seq 1 30); do echo tick $i; sleep 1; done")

    def running() -> bool:
        job = json.loads(cli("-o", "json", "job", "show", WS, EXP, "long").stdout)
        props = job["properties"]
        return props["executionState"] == "running" and bool((props.get("executionInfo") or {}).get("startTime"))

    wait_until(running, 90, "the job to run")
    nodes = json.loads(cli("-o", "json", "node", "list", WS, "one").stdout)
    assert len(nodes) == 1
    assert cli("node", "preempt", "one", "no-such-node", "-w", WS, check=False).exit_code == 1
    cli("node", "preempt", "one", nodes[0]["nodeId"], "-w", WS)
    waited = cli("job", "wait", WS, EXP, "long", "--interval", "0.5", "--timeout", "600", check=False)
    assert waited.exit_code == 0, waited.stderr
    job = json.loads(cli("-o", "json", "job", "show", WS, EXP, "long").stdout)
    assert job["properties"]["executionState"] == "succeeded"
    assert "Preempted" in [e["code"] for e in job["properties"]["executionInfo"]["errors"]]


def test_the_demo_trains_downloads_and_checks_the_model(local_stack: dict[str, Any]) -> None:
    env = dict(os.environ, BATCHAI_STATE_DIR=str(local_stack["state_dir"]))
    proc = subprocess.run([sys.executable, "-m", "examples.demo"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "local stack already up" in proc.stdout
    assert re.findall(r"^epoch (\d+)/8", proc.stdout, re.M) == [str(i) for i in range(1, 9)]
    accuracy = float(re.search(r"test accuracy of the downloaded model: ([0-9.]+)", proc.stdout).group(1))
    assert accuracy > 0.9
    assert "MODEL/model.npz" in proc.stdout
