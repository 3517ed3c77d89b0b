"""The public contract: Batch AI REST API 2018-05-01 (swagger 2.0) and its examples, verbatim.

`BatchAI.json` is the source of the request schemas that `shared.domain.validation` checks, and
`examples/ListOperation.json` of the provider's operation list. Nothing here is edited by hand.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

CONTRACT_DIR = Path(__file__).parent
API_VERSION = "2018-05-01"


@lru_cache(maxsize=1)
def swagger() -> dict[str, Any]:
    return json.loads((CONTRACT_DIR / "BatchAI.json").read_text())


def example(name: str) -> dict[str, Any]:
    return json.loads((CONTRACT_DIR / "examples" / name).read_text())
