"""Settings are memoised on the variables they may read: every variable the config module reads is one
of them, and a change of one (the quota and compute settings' included) or of the working directory
gives new settings."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from shared import config
from shared.config import Settings, read_by_settings


def test_every_variable_the_settings_read_is_a_key_of_the_memo() -> None:
    tree = ast.parse(inspect.getsource(config))
    read = {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
            and (node.args[0].value.startswith("BATCHAI_") or node.args[0].value[:1].isupper())}
    assert "BATCHAI_QUOTA_CLUSTERS" in read and "BATCHAI_STATE_DIR" in read
    assert [name for name in read if not read_by_settings(name)] == []


def test_a_changed_variable_or_directory_gives_new_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BATCHAI_MAX_RETRIES", "3")
    monkeypatch.setenv("BATCHAI_QUOTA_CLUSTERS", "20")
    monkeypatch.setenv("BATCHAI_STATE_DIR", "state")
    monkeypatch.chdir(tmp_path)
    first = Settings.from_env()
    assert Settings.from_env() is first and first.state_dir == tmp_path.resolve() / "state"
    monkeypatch.setenv("BATCHAI_MAX_RETRIES", "7")
    assert Settings.from_env().max_retries == 7
    monkeypatch.setenv("BATCHAI_QUOTA_CLUSTERS", "4")  # read by the nested quota settings
    assert Settings.from_env().quota.clusters == 4
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert Settings.from_env().state_dir == (tmp_path / "other" / "state").resolve()
