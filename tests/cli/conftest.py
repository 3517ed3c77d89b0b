"""CLI fixtures: an endpoint file for the in-process API, and a runner for `batchai` commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from shared.cli.main import app

Run = Callable[..., Result]


@pytest.fixture(scope="session")
def state_dir(api_endpoint: dict[str, str], storage_conn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory whose local/endpoint.json points at the api_endpoint fixture."""
    state = tmp_path_factory.mktemp("cli-state")
    (state / "local").mkdir()
    endpoint: dict[str, Any] = dict(api_endpoint, storage_connection_string=storage_conn)
    (state / "local" / "endpoint.json").write_text(json.dumps(endpoint))
    return state


@pytest.fixture
def batchai(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Runs `batchai --state-dir <state> ARGS...`; keyword `check=False` allows a non-zero exit."""
    monkeypatch.delenv("BATCHAI_ENDPOINT_FILE", raising=False)
    runner = CliRunner()

    def run(*args: str, check: bool = True) -> Result:
        result = runner.invoke(app, ["--state-dir", str(state_dir), *args])
        if check:
            assert result.exit_code == 0, f"batchai {' '.join(args)} exited {result.exit_code}:\n" \
                                          f"{result.stdout}\n{result.stderr}\n{result.exception!r}"
        return result

    return run


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)
