"""What the service needs to know about VM sizes: GPU families, cores/memory and GPUs by size, and the
quota family a size counts against (Standard_D1_v2 -> standardDv2Family).

The table covers the sizes Batch AI users picked most; an unknown size falls back to its vCPU
count when the name carries one (Standard_D8s_v3 -> 8) and 4 GiB per core. Quota families follow
Azure's names: the series letters, `S` for premium-storage sizes, then the version
(Standard_NC6s_v3 -> standardNCSv3Family, Standard_ND6s -> standardNDSFamily).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GPU_FAMILIES = ("nc", "nd", "nv")


@dataclass(frozen=True)
class SizeInfo:
    cores: int
    memory_gb: float


_KNOWN: dict[str, SizeInfo] = {
    "standard_a1_v2": SizeInfo(1, 2), "standard_a2_v2": SizeInfo(2, 4), "standard_a4_v2": SizeInfo(4, 8),
    "standard_d1_v2": SizeInfo(1, 3.5), "standard_d2_v2": SizeInfo(2, 7), "standard_d3_v2": SizeInfo(4, 14),
    "standard_d4_v2": SizeInfo(8, 28), "standard_d2s_v3": SizeInfo(2, 8), "standard_d4s_v3": SizeInfo(4, 16),
    "standard_d8s_v3": SizeInfo(8, 32), "standard_d2_v3": SizeInfo(2, 8), "standard_d4_v3": SizeInfo(4, 16),
    "standard_d2s_v5": SizeInfo(2, 8), "standard_d4s_v5": SizeInfo(4, 16), "standard_f2s_v2": SizeInfo(2, 4),
    "standard_f4s_v2": SizeInfo(4, 8), "standard_e2s_v3": SizeInfo(2, 16), "standard_e4s_v3": SizeInfo(4, 32),
    "standard_nc6": SizeInfo(6, 56), "standard_nc12": SizeInfo(12, 112), "standard_nc24": SizeInfo(24, 224),
    "standard_nc6s_v3": SizeInfo(6, 112), "standard_nd6s": SizeInfo(6, 112), "standard_nv6": SizeInfo(6, 56),
}


#: GPUs of the GPU sizes (Azure's counts; the emulated region's catalogue agrees).
_GPUS: dict[str, int] = {
    "standard_nc6": 1, "standard_nc12": 2, "standard_nc24": 4, "standard_nc24r": 4,
    **{f"standard_{s}{n}{v}": g for s, v in (("nc", "_v2"), ("nc", "_v3"), ("nd", ""))
       for n, g in (("6s", 1), ("12s", 2), ("24s", 4), ("24rs", 4))},
    "standard_nv6": 1, "standard_nv12": 2, "standard_nv24": 4,
    "standard_nc4as_t4_v3": 1, "standard_nc8as_t4_v3": 1, "standard_nc16as_t4_v3": 1, "standard_nc64as_t4_v3": 4,
    "standard_nc24ads_a100_v4": 1, "standard_nc48ads_a100_v4": 2, "standard_nc96ads_a100_v4": 4,
}


def gpu_count(vm_size: str) -> int:
    """The GPUs of a size (0: a CPU size, or a GPU size this table does not know)."""
    return _GPUS.get(normalize(vm_size), 0)


def normalize(vm_size: str) -> str:
    return vm_size.strip().lower()


def is_gpu_size(vm_size: str) -> bool:
    """NC, ND and NV families (any version, any letters after the family: NC6s_v3, NC24ads_A100_v4)."""
    name = normalize(vm_size).removeprefix("standard_").removeprefix("basic_")
    return name[:2] in GPU_FAMILIES and len(name) > 2 and (name[2].isdigit() or name[2] in "ahr")


def size_info(vm_size: str) -> SizeInfo:
    key = normalize(vm_size)
    if key in _KNOWN:
        return _KNOWN[key]
    match = re.match(r"(?:standard_|basic_)?[a-z]+?(\d+)", key)
    cores = int(match.group(1)) if match else 1
    return SizeInfo(cores, 4.0 * cores)


#: The families Batch AI's usages always listed, with the names its usages used for them.
LISTED_FAMILIES: dict[str, str] = {
    "standardDFamily": "Standard D Family", "standardDv2Family": "Standard Dv2 Family",
    "standardNCFamily": "Standard NC Family", "standardNCSv2Family": "Standard NCv2 Family",
    "standardNCSv3Family": "Standard NCv3 Family", "standardNDSFamily": "Standard ND Family",
    "standardNVFamily": "Standard NV Family",
}

_SIZE_NAME = re.compile(r"(?:standard_|basic_)?([a-z]+?)(\d+)([a-z]*)(?:_(.*))?$")


def family(vm_size: str) -> str:
    """The quota family of a size (Azure's `standard<Series>[S][vN]Family` names)."""
    match = _SIZE_NAME.match(normalize(vm_size))
    if not match:
        return "standardOtherFamily"
    series, _, modifiers, rest = match.groups()
    version = next((p for p in (rest or "").split("_") if re.fullmatch(r"v\d+", p)), "")
    premium = "S" if "s" in modifiers else ""
    return f"standard{series.upper()}{premium}{version}Family"


def family_display(family_id: str) -> str:
    """The human name of a family: "Standard Dv2 Family" (Batch AI's own names where it had one)."""
    if family_id in LISTED_FAMILIES:
        return LISTED_FAMILIES[family_id]
    core = family_id.removeprefix("standard").removesuffix("Family")
    return f"Standard {core} Family"
