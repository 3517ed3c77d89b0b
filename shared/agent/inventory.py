"""What a node offers, as the agent reports it in ``node-registered``: cores, memory, GPUs, address."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024  # the value is in kB
    except OSError:
        pass
    return 0


def gpu_names() -> list[str]:
    """The node's NVIDIA GPUs via NVML; none when `pynvml` or the driver is absent."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError: no driver on this machine, which means no GPUs
        return []
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names
    finally:
        pynvml.nvmlShutdown()


def inventory(address: str) -> dict[str, Any]:
    gpus = gpu_names()
    return {"cores": os.cpu_count() or 1, "memoryMb": memory_mb(), "gpus": len(gpus), "gpuNames": gpus,
            "address": address}
