"""Every registered route is described by exactly one access rule, whose scope it can fill in; only
/healthz and the nodes' own routes are left to authenticate themselves."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

from fastapi.routing import APIRoute

from functions.api import nodeagent
from functions.api.access import RULES
from functions.http_api import OPEN_PATHS, api
from shared.domain import rbac


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """The app's routes, included routers' too (FastAPI keeps an included router as one entry)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        else:
            yield from api_routes(getattr(getattr(route, "original_router", None), "routes", []))


def registered() -> dict[tuple[str, str], APIRoute]:
    routes = {}
    for route in api_routes(api.routes):
        if route.path not in OPEN_PATHS:
            for method in route.methods:
                routes[(method, route.path)] = route
    return routes


def test_every_module_route_is_seen() -> None:
    from functions.api import jobs, roles

    seen = {r.path for r in api_routes(api.routes)}
    assert {r.path for r in jobs.router.routes} | {r.path for r in roles.router.routes} <= seen


def test_every_route_has_a_rule_and_every_rule_a_route() -> None:
    routes = registered()
    assert set(routes) - set(RULES) == set(), "routes without an access rule"
    assert set(RULES) - set(routes) == set(), "rules of routes that do not exist"


def test_only_health_and_node_routes_are_open() -> None:
    assert {"/healthz", *nodeagent.PATHS} == OPEN_PATHS


def test_rule_scopes_use_only_their_routes_parameters() -> None:
    for key, route in registered().items():
        rule = RULES[key]
        params = {name.split(":")[0] for _, name, _, _ in string.Formatter().parse(route.path) if name}
        used = {name for _, name, _, _ in string.Formatter().parse(rule.scope or "") if name}
        assert used <= params, (key, used - params)
        assert rule.action.startswith(("Microsoft.BatchAI/", "Microsoft.Authorization/")), key
        if rule.scope is None:  # open to every authenticated caller: only the provider's operation list
            assert rule.action == rbac.OPERATIONS_READ, key


def test_reads_are_reads_and_writes_are_not() -> None:
    """A route that changes nothing needs a read or list action; one that changes something never does,
    so Reader (*/read) can never write."""
    for (method, path), rule in RULES.items():
        if method in ("PUT", "PATCH", "DELETE"):
            assert not rule.action.endswith("/read"), (method, path)
        # (the output of a command run on a node is read with the right to run it: remoteLoginInformation)
        elif method == "GET" and not path.endswith(("/listOutputFiles", "/listNodeSetupFiles", "/execs/{execId}")):
            assert rule.action.endswith("/read"), (method, path)
