"""Fixtures of the reliability tests: a simulated cluster (the scheduling tests' `World`: job and cluster
documents, node rows, node queues, no agent) over the session's Azurite and over the storage port in
memory, and the whole local stack driven through the official SDK (`stack`, the process topology)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.config import Settings
from tests.conftest import own_azurite
from tests.e2e.conftest import Stack
from tests.scheduling.conftest import World, settings_over


@pytest.fixture(params=["azurite", "memory"])
def settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    yield from settings_over(request)


@pytest.fixture()
def world(settings: Settings) -> World:
    return World(settings)


@pytest.fixture(scope="module")
def private_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An Azurite of the module's own: timers act on everything they find (every operation in flight,
    every cluster), so their tests must not share storage with other tests' timers and leftovers."""
    yield from own_azurite(tmp_path_factory, "private-azurite")


@pytest.fixture(params=["azurite", "memory"])
def alone(request: pytest.FixtureRequest, storage_conn: str) -> Iterator[World]:
    """A simulated cluster in the module's own Azurite (`private_storage`), or in a storage of the test's own
    in memory."""
    for settings in settings_over(request, "private_storage"):
        yield World(settings)


@pytest.fixture(scope="session")
def stack(local_stack: dict[str, object]) -> Stack:
    return Stack(local_stack)
