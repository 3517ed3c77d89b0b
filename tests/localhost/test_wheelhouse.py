"""The node agent's wheelhouse: a fresh virtual environment with no package index gets a working agent
from it alone (every dependency the agent imports is declared and present), and publishing it to the
wheelhouse container uploads only what changed."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from shared.adapters import storage
from shared.localstack import wheelhouse


def test_the_agent_installs_and_starts_from_the_wheelhouse_alone(tmp_path: Path) -> None:
    house = wheelhouse.build_wheelhouse(python_version=f"{sys.version_info.major}.{sys.version_info.minor}")
    assert any(p.name.startswith("batchai-") for p in house.glob("*.whl"))
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(house),
                    "batchai"], check=True, cwd=tmp_path)
    # Away from the source tree: only what the wheel installed can be imported.
    ran = subprocess.run([str(python), "-c", "import shared.agent.__main__, shared.agent.containers; "
                          "import shared, sys; print(shared.__file__)"], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert str(env) in ran.stdout
    usage = subprocess.run([str(python), "-m", "shared.agent", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert usage.returncode == 0 and "--config" in usage.stdout, usage.stderr


def test_publishing_uploads_only_changed_wheels(storage_conn: str, tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    (house / "a-1.0-py3-none-any.whl").write_bytes(b"first")
    (house / "b-1.0-py3-none-any.whl").write_bytes(b"second")
    assert wheelhouse.publish(storage_conn, house) == ["a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl"]
    assert wheelhouse.publish(storage_conn, house) == []
    (house / "a-1.0-py3-none-any.whl").write_bytes(b"changed")
    (house / "b-1.0-py3-none-any.whl").unlink()
    assert wheelhouse.publish(storage_conn, house) == ["a-1.0-py3-none-any.whl"]
    container = storage.container(storage_conn, storage.C_WHEELHOUSE)
    assert [b.name for b in container.list_blobs()] == ["a-1.0-py3-none-any.whl"]
    assert container.download_blob("a-1.0-py3-none-any.whl").readall() == b"changed"
