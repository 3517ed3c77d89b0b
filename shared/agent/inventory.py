"""What a node offers, as the agent reports it in ``node-registered``: cores, memory, GPUs, address, and
the port of its sshd where it has one (machines: remote login; a process node has none)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.agent import gpus as nvidia


def memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024  # the value is in kB
    except OSError:
        pass
    return 0


def inventory(address: str, declared_gpus: int | None = None, ssh_port: int | None = None) -> dict[str, Any]:
    """`declared_gpus` (the agent config's ``gpus``) stands for GPUs the agent cannot see itself
    (no driver in reach of the agent); otherwise the GPUs are those `nvidia-smi` lists."""
    seen = nvidia.query()
    names = [gpu.name for gpu in seen]
    count = len(seen) if declared_gpus is None else declared_gpus
    found = {"cores": os.cpu_count() or 1, "memoryMb": memory_mb(), "gpus": count, "gpuNames": names,
             "address": address}
    if ssh_port is not None:
        found["sshPort"] = ssh_port
    return found
