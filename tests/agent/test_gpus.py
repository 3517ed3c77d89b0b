"""GPU discovery from `nvidia-smi --query-gpu=index,uuid,name,memory.total`, on outputs printed by real machines.

Sources of the samples (public threads and logs that printed them):
- two GPUs, `--format=csv` (header and units): a Docker Compose GPU test log (RTX 4080 SUPER + RTX 3090);
- H200 rows: a `podman exec ... nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used` session
  (memory.used dropped: it is not queried here);
- `[N/A]` memory.total: NVIDIA GB10 (DGX Spark) reports no framebuffer memory (nvitop PR #208, unsloth PR #10283);
  those threads printed only the memory fields, so the GB10 row's UUID here is a placeholder.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from shared.agent import gpus
from shared.agent.inventory import inventory

TWO_GPUS_WITH_UNITS = """\
index, uuid, name, memory.total [MiB]
0, GPU-e4252fcb-8ed4-ef11-71cd-d36a23871c75, NVIDIA GeForce RTX 4080 SUPER, 16376 MiB
1, GPU-358353dd-5933-1dc6-ac0d-e1189b063e4c, NVIDIA GeForce RTX 3090, 24576 MiB
"""
TWO_GPUS = """\
0, GPU-e4252fcb-8ed4-ef11-71cd-d36a23871c75, NVIDIA GeForce RTX 4080 SUPER, 16376
1, GPU-358353dd-5933-1dc6-ac0d-e1189b063e4c, NVIDIA GeForce RTX 3090, 24576
"""
THREE_H200 = """\
0, GPU-78aaaccb-3af1-11b3-b1f8-3828c251d9f2, NVIDIA H200-141C, 144384
1, GPU-7bdd753d-3af1-11b3-a839-80f10ebdf224, NVIDIA H200-141C, 144384
2, GPU-7eb48ff1-3af1-11b3-9b3a-93ee06a0ff76, NVIDIA H200-141C, 144384
"""
GB10 = "0, GPU-a1b2c3d4-0000-0000-0000-000000000000, NVIDIA GB10, [N/A]\n"
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
             "latest NVIDIA driver is installed and running.")


@pytest.mark.parametrize(("output", "expected"), [
    ("", []),
    ("\n", []),
    (TWO_GPUS, [(0, "GPU-e4252fcb-8ed4-ef11-71cd-d36a23871c75", "NVIDIA GeForce RTX 4080 SUPER", 16376),
                (1, "GPU-358353dd-5933-1dc6-ac0d-e1189b063e4c", "NVIDIA GeForce RTX 3090", 24576)]),
    (TWO_GPUS_WITH_UNITS, [(0, "GPU-e4252fcb-8ed4-ef11-71cd-d36a23871c75", "NVIDIA GeForce RTX 4080 SUPER", 16376),
                           (1, "GPU-358353dd-5933-1dc6-ac0d-e1189b063e4c", "NVIDIA GeForce RTX 3090", 24576)]),
    (THREE_H200, [(i, u, "NVIDIA H200-141C", 144384) for i, u in enumerate(
        ["GPU-78aaaccb-3af1-11b3-b1f8-3828c251d9f2", "GPU-7bdd753d-3af1-11b3-a839-80f10ebdf224",
         "GPU-7eb48ff1-3af1-11b3-9b3a-93ee06a0ff76"])]),
    (GB10, [(0, "GPU-a1b2c3d4-0000-0000-0000-000000000000", "NVIDIA GB10", None)]),
])
def test_parse(output: str, expected: list[tuple[int, str, str, int | None]]) -> None:
    assert [(g.index, g.uuid, g.name, g.memory_mib) for g in gpus.parse(output)] == expected


@pytest.mark.parametrize("output", [NO_DRIVER, "0, GPU-x, only three", "zero, GPU-x, NVIDIA A100, 40960"])
def test_parse_refuses_what_is_not_a_gpu_row(output: str) -> None:
    with pytest.raises(ValueError):
        gpus.parse(output)


def _fake_nvidia_smi(directory: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `nvidia-smi` executable first on PATH (the agent runs whatever the machine has there)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_query_runs_nvidia_smi_with_the_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = tmp_path / "args"
    _fake_nvidia_smi(tmp_path / "bin", f'echo "$@" > {args}\ncat <<"EOF"\n{THREE_H200}EOF\n', monkeypatch)
    found = gpus.query()
    assert [g.index for g in found] == [0, 1, 2]
    assert args.read_text().split() == gpus.QUERY[1:]
    assert inventory("10.0.0.4")["gpus"] == 3
    assert inventory("10.0.0.4")["gpuNames"] == ["NVIDIA H200-141C"] * 3


def test_failing_nvidia_smi_counts_no_gpus_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    _fake_nvidia_smi(tmp_path / "bin", f'echo "{NO_DRIVER}" >&2\nexit 9\n', monkeypatch)
    with caplog.at_level(logging.WARNING, logger="shared.agent.gpus"):
        assert gpus.query() == []
    assert "exited with 9" in caplog.text and "couldn't communicate with the NVIDIA driver" in caplog.text


def test_missing_nvidia_smi_is_no_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no nvidia-smi anywhere
    assert gpus.query() == []
    assert inventory("10.0.0.4")["gpus"] == 0


def test_declared_gpus_stand_for_gpus_the_agent_cannot_see(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert inventory("10.0.0.4", declared_gpus=4)["gpus"] == 4
