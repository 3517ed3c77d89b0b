"""Settings are memoised on the variables they read: every variable `from_mapping` reads is a key of
the memo, and a change of one (or of the working directory) gives new settings."""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from pathlib import Path

import pytest

from shared.config import SETTINGS_VARIABLES, Settings


def test_every_variable_read_is_a_key_of_the_memo() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(Settings.from_mapping)))
    read = {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and node.args and isinstance(node.args[0], ast.Constant)}
    assert read and read == set(SETTINGS_VARIABLES)


def test_a_changed_variable_or_directory_gives_new_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BATCHAI_MAX_RETRIES", "3")
    monkeypatch.setenv("BATCHAI_STATE_DIR", "state")
    monkeypatch.chdir(tmp_path)
    first = Settings.from_env()
    assert Settings.from_env() is first and first.state_dir == tmp_path.resolve() / "state"
    monkeypatch.setenv("BATCHAI_MAX_RETRIES", "7")
    assert Settings.from_env().max_retries == 7
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert Settings.from_env().state_dir == (tmp_path / "other" / "state").resolve()
    assert os.environ["BATCHAI_MAX_RETRIES"] == "7"
