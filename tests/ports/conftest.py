"""The storage port under test twice: over Azurite (the contract) and in memory (the fast twin)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared import ports
from shared.ports.contract import Storage


@pytest.fixture(params=["azurite", "memory"])
def port_conn(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "azurite":
        yield request.getfixturevalue("storage_conn")
        return
    conn = ports.memory(uuid.uuid4().hex)
    yield conn
    ports.forget(conn)


@pytest.fixture()
def port(port_conn: str) -> Storage:
    return ports.of(port_conn)
