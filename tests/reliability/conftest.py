"""Fixtures of the reliability tests: a simulated cluster over the session's Azurite (the scheduling
tests' `World`: job and cluster documents, node rows, node queues, no agent), and the whole local
stack driven through the official SDK (`stack`, the process topology)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from shared.adapters import storage
from shared.config import Settings
from shared.localstack.azurite import start_azurite
from tests.e2e.conftest import Stack
from tests.scheduling.conftest import World


@pytest.fixture()
def settings(storage_conn: str) -> Settings:
    return dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn, max_retries=2)


@pytest.fixture()
def world(settings: Settings) -> World:
    return World(settings)


@pytest.fixture(scope="module")
def private_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An Azurite of the module's own: timers act on everything they find (every operation in flight,
    every cluster), so their tests must not share storage with other tests' timers and leftovers."""
    location = tmp_path_factory.mktemp("private-azurite")
    server = start_azurite(location, log=location / "azurite.log")
    try:
        storage.ensure_all(server.connection_string)
        yield server.connection_string
    finally:
        server.stop()


@pytest.fixture()
def alone(private_storage: str, storage_conn: str) -> World:
    """A simulated cluster in the module's own storage (`private_storage`)."""
    return World(dataclasses.replace(Settings.from_env(), storage_connection_string=private_storage, max_retries=2))


@pytest.fixture(scope="session")
def stack(local_stack: dict[str, object]) -> Stack:
    return Stack(local_stack)
