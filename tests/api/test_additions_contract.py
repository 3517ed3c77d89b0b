"""The OpenAPI of the GPU-slot and bring-your-own additions (shared/domain/contract/clusters-additions.json)
says what the code accepts: the same enums and bounds, and exactly the join-token routes with their methods."""

from __future__ import annotations

import json
from typing import Any

from fastapi.routing import APIRoute

from functions.api import join_tokens as join_token_routes
from shared.domain import placement_options
from shared.domain.contract import CONTRACT_DIR
from shared.services import join_tokens


def _doc() -> dict[str, Any]:
    return json.loads((CONTRACT_DIR / "clusters-additions.json").read_text())


def test_the_properties_have_the_code_s_values_and_bounds() -> None:
    definitions = _doc()["definitions"]
    cluster = definitions["ClusterAdditionsProperties"]["properties"]
    assert tuple(cluster["packing"]["enum"]) == placement_options.PACKINGS
    assert tuple(cluster["nodeSource"]["enum"]) == placement_options.NODE_SOURCES
    gpus = definitions["JobAdditionsProperties"]["properties"]["gpusPerNode"]
    assert (gpus["minimum"], gpus["maximum"]) == (1, placement_options.MAX_GPUS_PER_NODE)
    hours = definitions["JoinTokenCreateParameters"]["properties"]["expiresInHours"]
    assert (hours["maximum"], hours["default"]) == (join_tokens.MAX_HOURS, join_tokens.DEFAULT_HOURS)


def test_every_join_token_route_and_method_is_documented() -> None:
    documented = {(method.upper(), path) for path, ops in _doc()["paths"].items() for method in ops}
    served = {(method, route.path) for route in join_token_routes.router.routes if isinstance(route, APIRoute)
              for method in route.methods}
    assert len(served) == 3 and documented == served
