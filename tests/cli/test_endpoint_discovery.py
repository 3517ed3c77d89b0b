"""How the CLI finds the service: --endpoint, BATCHAI_ENDPOINT_FILE, --state-dir, ./.batchai, in that order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli.context import endpoint_file_path
from shared.cli.main import app


@pytest.fixture
def endpoint_json(state_dir: Path) -> Path:
    return state_dir / "local" / "endpoint.json"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("BATCHAI_ENDPOINT_FILE", raising=False)
    monkeypatch.delenv("BATCHAI_STATE_DIR", raising=False)
    return monkeypatch


def workspace_names(args: list[str]) -> list[str]:
    result = CliRunner().invoke(app, [*args, "-o", "json", "workspace", "list"])
    assert result.exit_code == 0, result.stderr
    return [w["name"] for w in json.loads(result.stdout)]


def test_precedence_of_endpoint_sources(clean_env: pytest.MonkeyPatch) -> None:
    assert endpoint_file_path(None, None) == Path(".batchai/local/endpoint.json")
    assert endpoint_file_path(None, "/s") == Path("/s/local/endpoint.json")
    clean_env.setenv("BATCHAI_ENDPOINT_FILE", "/env/ep.json")
    assert endpoint_file_path(None, "/s") == Path("/env/ep.json")
    assert endpoint_file_path("/opt/ep.json", "/s") == Path("/opt/ep.json")


def test_default_is_dot_batchai_in_the_working_directory(clean_env: pytest.MonkeyPatch, endpoint_json: Path,
                                                          tmp_path: Path) -> None:
    (tmp_path / ".batchai" / "local").mkdir(parents=True)
    shutil.copy(endpoint_json, tmp_path / ".batchai" / "local" / "endpoint.json")
    clean_env.chdir(tmp_path)
    assert isinstance(workspace_names([]), list)


def test_endpoint_option_and_env(clean_env: pytest.MonkeyPatch, endpoint_json: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere.json"
    shutil.copy(endpoint_json, moved)
    clean_env.chdir(tmp_path)  # no .batchai here
    assert isinstance(workspace_names(["--endpoint", str(moved)]), list)
    clean_env.setenv("BATCHAI_ENDPOINT_FILE", str(moved))
    assert isinstance(workspace_names([]), list)
    clean_env.setenv("BATCHAI_ENDPOINT_FILE", str(tmp_path / "missing.json"))
    assert isinstance(workspace_names(["--endpoint", str(moved)]), list)


def test_missing_endpoint_file_says_how_to_start_the_stack(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)
    result = CliRunner().invoke(app, ["workspace", "list"])
    assert result.exit_code == 1
    assert ".batchai/local/endpoint.json" in result.stderr and "batchai stack up" in result.stderr


def test_broken_endpoint_file_is_reported(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "ep.json"
    bad.write_text(json.dumps({"url": "https://127.0.0.1:1"}))
    result = CliRunner().invoke(app, ["--endpoint", str(bad), "workspace", "list"])
    assert result.exit_code == 1 and "lacks token" in result.stderr


def test_unreachable_service_is_an_error_not_a_traceback(clean_env: pytest.MonkeyPatch, endpoint_json: Path,
                                                         tmp_path: Path) -> None:
    from shared.localstack.azurite import free_port

    endpoint = json.loads(endpoint_json.read_text())
    endpoint["url"] = f"https://127.0.0.1:{free_port()}"
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps(endpoint))
    result = CliRunner().invoke(app, ["--endpoint", str(dead), "workspace", "list"])
    assert result.exit_code == 1
    assert "cannot reach the service" in result.stderr
    assert "Traceback" not in result.stderr


def test_resource_group_and_subscription_come_from_the_endpoint_file(clean_env: pytest.MonkeyPatch,
                                                                      endpoint_json: Path) -> None:
    args = ["--endpoint", str(endpoint_json)]
    result = CliRunner().invoke(app, [*args, "-o", "json", "workspace", "create", "cli-disc"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["id"].startswith(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/demo/")
    other = CliRunner().invoke(app, [*args, "-g", "other-rg", "-o", "json", "workspace", "list"])
    assert other.exit_code == 0, other.stderr
    assert "cli-disc" not in [w["name"] for w in json.loads(other.stdout)]
