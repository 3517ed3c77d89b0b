"""The node's NVIDIA GPUs, as `nvidia-smi` lists them.

`nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits` prints one line
per GPU. No driver or no `nvidia-smi` means no GPUs; an `nvidia-smi` that fails (e.g. "couldn't
communicate with the NVIDIA driver") is logged as a warning with what it printed, and counts none.
A field the driver cannot report is printed as ``[N/A]`` (memory.total on unified-memory GPUs).
"""

from __future__ import annotations

import csv
import logging
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]
TIMEOUT_S = 30.0
_UNAVAILABLE = {"[n/a]", "n/a", "[not supported]", "not supported", ""}


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_mib: int | None  # None when the driver reports none (unified memory)


def _memory(text: str) -> int | None:
    value = text.strip()
    if value.lower() in _UNAVAILABLE:
        return None
    return int(value.removesuffix("MiB").strip())


def parse(output: str) -> list[Gpu]:
    """The GPUs of a ``--query-gpu=index,uuid,name,memory.total`` CSV (a header line, if any, and units
    are tolerated). Raises ValueError on a line that is not such a row."""
    gpus = []
    for row in csv.reader(output.splitlines(), skipinitialspace=True):
        if not row or not "".join(row).strip():
            continue
        if row[0].strip() == "index":  # the header of --format=csv
            continue
        if len(row) != 4:
            raise ValueError(f"not an index,uuid,name,memory.total row: {row!r}")
        index, uuid, name, memory = (field.strip() for field in row)
        gpus.append(Gpu(int(index), uuid, name, _memory(memory)))
    return gpus


def query(timeout_s: float = TIMEOUT_S) -> list[Gpu]:
    """This machine's GPUs; none without `nvidia-smi`, or when it fails (logged)."""
    try:
        result = subprocess.run(QUERY, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return []
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("nvidia-smi could not run (%s): counting no GPUs", error)
        return []
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip())[-2000:]
        log.warning("nvidia-smi exited with %s: %s; counting no GPUs", result.returncode, said)
        return []
    try:
        return parse(result.stdout)
    except ValueError as error:
        log.warning("nvidia-smi printed something unexpected (%s): counting no GPUs", error)
        return []
