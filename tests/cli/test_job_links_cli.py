"""`batchai job create --array/--max-concurrent/--depends-on`, and the same from the job file, against
the real API: what the service stored (read from its own job documents; the SDK's model shows
neither), and refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.domain.keys import WorkspaceRef
from shared.services import job_state
from tests.cli.conftest import Run, as_json

WS, EXP = "cli-links", "exp"


@pytest.fixture(scope="module")
def workspace(state_dir: Path) -> str:
    from typer.testing import CliRunner

    from shared.cli.main import app

    runner = CliRunner()
    for args in (["workspace", "create", WS], ["experiment", "create", WS, EXP],
                 ["cluster", "create", WS, "cpu", "--vm-size", "STANDARD_D1", "--target", "0", "-u", "u", "-p", "p"]):
        result = runner.invoke(app, ["--state-dir", str(state_dir), *args])
        assert result.exit_code == 0, result.stderr
    return WS


def job_file(tmp_path: Path, **extra: Any) -> str:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"properties": {"customToolkitSettings": {"commandLine": "echo $AZ_BATCHAI_ARRAY_INDEX"},
                                               "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs", **extra}}))
    return str(path)


def stored(name: str) -> dict[str, Any]:
    ref = WorkspaceRef("00000000-0000-0000-0000-000000000000", "demo", WS).experiment(EXP).job(name)
    doc = job_state.get(Settings.from_env(), ref)
    assert doc is not None, name
    return doc.data


def test_array_and_dependency_flags(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path)
    batchai("job", "create", WS, EXP, "prep", "-f", path, "-c", "cpu")
    created = as_json(batchai("job", "create", WS, EXP, "sweep", "-f", path, "-c", "cpu", "--array", "3",
                              "--max-concurrent", "2", "--depends-on", "prep", "-o", "json"))
    assert created["name"] == "sweep"
    props = stored("sweep")["properties"]
    assert props["array"] == {"count": 3, "maxConcurrent": 2}
    assert props["dependsOn"] == [{"job": "prep", "condition": "succeeded"}]
    assert stored("sweep")["internal"]["waitingReason"] == "WaitingForDependencies"
    shown = batchai("job", "show", WS, EXP, "sweep-0", check=False)
    assert shown.exit_code == 1  # waiting: no child is written before prep succeeds


def test_the_job_file_gives_them_and_flags_go_over_it(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path)
    batchai("job", "create", WS, EXP, "a", "-f", path, "-c", "cpu")
    batchai("job", "create", WS, EXP, "b", "-f", path, "-c", "cpu")
    with_links = job_file(tmp_path, array={"count": 4}, dependsOn=[{"job": "a", "condition": "ended"}])
    batchai("job", "create", WS, EXP, "both", "-f", with_links, "-c", "cpu", "--max-concurrent", "1",
            "--depends-on", "b:ended")
    props = stored("both")["properties"]
    assert props["array"] == {"count": 4, "maxConcurrent": 1}
    assert props["dependsOn"] == [{"job": "a", "condition": "ended"}, {"job": "b", "condition": "ended"}]


def test_refusals(batchai: Run, workspace: str, tmp_path: Path) -> None:
    path = job_file(tmp_path)
    missing = batchai("job", "create", WS, EXP, "orphan", "-f", path, "-c", "cpu", "--depends-on", "nosuchjob",
                      check=False)
    assert missing.exit_code == 1 and "nosuchjob" in missing.stderr
    alone = batchai("job", "create", WS, EXP, "k", "-f", path, "-c", "cpu", "--max-concurrent", "2", check=False)
    assert alone.exit_code == 2 and "--array" in alone.stderr
    too_many = batchai("job", "create", WS, EXP, "big", "-f", path, "-c", "cpu", "--array", "1001", check=False)
    assert too_many.exit_code == 1 and "properties.array.count" in too_many.stderr
    bad_file = job_file(tmp_path, arrays={"count": 2})
    typo = batchai("job", "create", WS, EXP, "typo", "-f", bad_file, "-c", "cpu", check=False)
    assert typo.exit_code == 1 and "'array'" in typo.stderr  # did you mean 'array'?
