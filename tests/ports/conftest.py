"""The storage port under test twice: over Azurite (the contract) and in memory (the fast twin).

The Azurite is this package's own: these tests write rows that no service wrote (a pending index
without jobs, links without arrays), which the timers of other tests would find in a shared one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared import ports
from shared.ports.contract import Storage
from tests.conftest import own_azurite


@pytest.fixture(scope="package")
def private_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from own_azurite(tmp_path_factory, "ports-azurite")


@pytest.fixture(params=["azurite", "memory"])
def port_conn(request: pytest.FixtureRequest, storage_conn: str) -> Iterator[str]:
    """A connection string of either kind (`storage_conn` sets the environment the services read)."""
    if request.param == "azurite":
        yield request.getfixturevalue("private_storage")
        return
    conn = ports.memory(uuid.uuid4().hex)
    yield conn
    ports.forget(conn)


@pytest.fixture()
def port(port_conn: str) -> Storage:
    return ports.of(port_conn)
