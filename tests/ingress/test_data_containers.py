"""Data containers a workspace registers (`properties.dataContainers`): one workspace per container,
the service's own names never, a PUT without the property keeps them, and what one workspace gives
up another may take."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from shared.config import Settings
from shared.domain.keys import WorkspaceRef
from shared.services import data_containers
from tests.ingress.conftest import API, error_of, put, workspace, ws_path


def _containers(http: httpx.Client, path: str) -> list[str]:
    return list(http.get(path, params=API).json()["properties"].get("dataContainers") or [])


def _register(http: httpx.Client, path: str, names: list[str]) -> httpx.Response:
    return http.patch(path, params=API, json={"properties": {"dataContainers": names}})


def test_a_container_belongs_to_one_workspace_at_a_time(http: httpx.Client, sub: str) -> None:
    stamp = datetime.now(UTC).strftime("%H%M%S%f")
    mine, theirs = f"in-{stamp}", f"out-{stamp}"
    a = workspace(http, sub, "a", dataContainers=[mine, theirs])
    b = workspace(http, sub, "b")
    assert _containers(http, a) == [mine, theirs]
    taken = _register(http, b, [theirs])
    assert taken.status_code == 409 and error_of(taken)["code"] == "DataContainerInUse", taken.text
    assert _containers(http, b) == []
    settings = Settings.from_env()
    ref_a, ref_b = WorkspaceRef(sub, "demo", "a"), WorkspaceRef(sub, "demo", "b")
    assert data_containers.registered(settings, ref_a, theirs)
    assert not data_containers.registered(settings, ref_b, theirs)
    assert put(http, a, {"location": "local", "tags": {"t": "1"}}).status_code == 200  # a 2018 client's PUT
    assert _containers(http, a) == [mine, theirs]
    assert _register(http, a, [mine]).status_code == 200  # a gives it up ...
    assert _register(http, b, [theirs]).status_code == 200  # ... and b may take it
    assert data_containers.registered(settings, ref_b, theirs)
    assert not data_containers.registered(settings, ref_a, theirs)
    assert http.delete(a, params=API).status_code in (200, 202, 204)
    assert _register(http, b, [theirs, mine]).status_code == 200  # a deleted workspace holds nothing


@pytest.mark.parametrize("name", ["batchai-outputs", "batchai-triggers", "batchai-wheelhouse", "bsr-0123-0001-1",
                                  "azure-webjobs-hosts", "azure-webjobs-secrets", "deploymentpackage",
                                  "scm-releases", "$root", "$logs", "UPPER", "a--b", "ab", "-ab", "x" * 64,
                                  "in\n", "\u212ain"])
def test_the_service_s_own_and_invalid_names_are_never_registered(http: httpx.Client, sub: str, name: str) -> None:
    path = workspace(http, sub)
    r = _register(http, path, [name])
    assert r.status_code == 400 and error_of(r)["target"] == "properties.dataContainers[0]", r.text
    created = put(http, ws_path(sub, "other"), {"location": "local", "properties": {"dataContainers": [name]}})
    assert created.status_code == 400, created.text
    assert http.get(ws_path(sub, "other"), params=API).status_code == 404


def test_the_list_is_bounded_and_must_be_a_list(http: httpx.Client, sub: str) -> None:
    path = workspace(http, sub)
    assert _register(http, path, "inputs").status_code == 400  # type: ignore[arg-type]
    assert _register(http, path, [f"c{i:04d}" for i in range(101)]).status_code == 400
