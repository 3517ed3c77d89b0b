"""The VM sizes the emulated region offers: the sizes Batch AI offered (A v2, D, Dv2, DSv2, Dv3,
Dsv3, Dsv5, E v3, F, Fsv2, H, and the GPU families NC, NCv2, NCv3, ND, NV) plus the current T4 and
A100 GPU sizes, with Azure's vCPUs, memory and GPUs.

A size outside the catalogue is refused on scale set and VM writes as Azure refuses a size the
region lacks (409 SkuNotAvailable). Names compare case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class VmSize:
    name: str
    vcpus: int
    memory_gb: float
    gpus: int = 0
    gpu_model: str = ""


class SizeCatalogue:
    def __init__(self, sizes: Iterable[VmSize]) -> None:
        self._sizes = {size.name.lower(): size for size in sizes}

    def get(self, name: str) -> VmSize | None:
        return self._sizes.get(name.strip().lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[VmSize]:
        return iter(self._sizes.values())


def _series(template: str, rows: Iterable[tuple[str, int, float]], gpus: Iterable[int] = (),
            gpu_model: str = "") -> list[VmSize]:
    gpu_counts = list(gpus)
    return [VmSize(template.format(n), vcpus, memory, gpu_counts[i] if gpu_counts else 0, gpu_model)
            for i, (n, vcpus, memory) in enumerate(rows)]


_D_V1 = [("1", 1, 3.5), ("2", 2, 7), ("3", 4, 14), ("4", 8, 28), ("11", 2, 14), ("12", 4, 28), ("13", 8, 56),
         ("14", 16, 112)]
_D_V2 = [*_D_V1, ("5", 16, 56), ("15", 20, 140)]
_D_V3 = [("2", 2, 8), ("4", 4, 16), ("8", 8, 32), ("16", 16, 64), ("32", 32, 128), ("64", 64, 256)]
_GPU_K80 = [("6", 6, 56), ("12", 12, 112), ("24", 24, 224), ("24r", 24, 224)]
_GPU_BIG = [("6s", 6, 112), ("12s", 12, 224), ("24s", 24, 448), ("24rs", 24, 448)]

BATCH_AI_SIZES: tuple[VmSize, ...] = (
    *_series("Standard_A{}_v2", [("1", 1, 2), ("2", 2, 4), ("4", 4, 8), ("8", 8, 16), ("2m", 2, 16),
                                 ("4m", 4, 32), ("8m", 8, 64)]),
    *_series("Standard_D{}", _D_V1),
    *_series("Standard_DS{}", _D_V1),
    *_series("Standard_D{}_v2", _D_V2),
    *_series("Standard_DS{}_v2", _D_V2),
    *_series("Standard_D{}_v3", _D_V3),
    *_series("Standard_D{}s_v3", _D_V3),
    *_series("Standard_D{}_v5", _D_V3[:5]),
    *_series("Standard_D{}s_v5", _D_V3[:5]),
    *_series("Standard_E{}_v3", [("2", 2, 16), ("4", 4, 32), ("8", 8, 64), ("16", 16, 128), ("32", 32, 256),
                                 ("64", 64, 432)]),
    *_series("Standard_E{}s_v3", [("2", 2, 16), ("4", 4, 32), ("8", 8, 64), ("16", 16, 128), ("32", 32, 256),
                                  ("64", 64, 432)]),
    *_series("Standard_F{}", [("1", 1, 2), ("2", 2, 4), ("4", 4, 8), ("8", 8, 16), ("16", 16, 32)]),
    *_series("Standard_F{}s_v2", [("2", 2, 4), ("4", 4, 8), ("8", 8, 16), ("16", 16, 32), ("32", 32, 64),
                                  ("64", 64, 128), ("72", 72, 144)]),
    *_series("Standard_H{}", [("8", 8, 56), ("16", 16, 112), ("16r", 16, 112), ("16m", 16, 224),
                              ("16mr", 16, 224)]),
    *_series("Standard_NC{}", _GPU_K80, [1, 2, 4, 4], "Tesla K80"),
    *_series("Standard_NC{}_v2", _GPU_BIG, [1, 2, 4, 4], "Tesla P100"),
    *_series("Standard_NC{}_v3", _GPU_BIG, [1, 2, 4, 4], "Tesla V100"),
    *_series("Standard_ND{}", _GPU_BIG, [1, 2, 4, 4], "Tesla P40"),
    *_series("Standard_NV{}", _GPU_K80[:3], [1, 2, 4], "Tesla M60"),
    *_series("Standard_NC{}as_T4_v3", [("4", 4, 28), ("8", 8, 56), ("16", 16, 110), ("64", 64, 440)],
             [1, 1, 1, 4], "Tesla T4"),
    *_series("Standard_NC{}ads_A100_v4", [("24", 24, 220), ("48", 48, 440), ("96", 96, 880)], [1, 2, 4],
             "A100 80GB PCIe"),
)

DEFAULT_CATALOGUE = SizeCatalogue(BATCH_AI_SIZES)


def sku_not_available(size: str, location: str) -> str:
    """Azure's message when a region lacks a size."""
    return (f"The requested VM size {size} is not available in the current region {location}. Please try "
            "another size or deploy to a different location or zones. See https://aka.ms/azureskunotavailable "
            "for details.")
