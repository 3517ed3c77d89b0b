"""The OpenAPI of the sweeps addition (shared/domain/contract/sweeps.json) describes exactly the sweep routes,
with the methods they serve; responses are checked against it in test_service (which calls them through the
API)."""

from __future__ import annotations

import json

from fastapi.routing import APIRoute

from functions.api import sweeps
from shared.domain.contract import CONTRACT_DIR


def test_every_sweep_route_and_method_is_documented() -> None:
    doc = json.loads((CONTRACT_DIR / "sweeps.json").read_text())
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {(method, route.path) for route in sweeps.router.routes if isinstance(route, APIRoute)
              for method in route.methods}
    assert len(served) == 5 and documented == served
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["operationId"].startswith("Sweeps_") and "default" in op["responses"]
