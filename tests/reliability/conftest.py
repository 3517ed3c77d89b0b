"""Fixtures of the reliability tests: a simulated cluster over the session's Azurite (the scheduling
tests' `World`: job and cluster documents, node rows, node queues, no agent), and the whole local
stack driven through the official SDK (`stack`, the process topology)."""

from __future__ import annotations

import dataclasses

import pytest

from shared.config import Settings
from tests.e2e.conftest import Stack
from tests.scheduling.conftest import World


@pytest.fixture()
def settings(storage_conn: str) -> Settings:
    return dataclasses.replace(Settings.from_env(), storage_connection_string=storage_conn, max_retries=2)


@pytest.fixture()
def world(settings: Settings) -> World:
    return World(settings)


@pytest.fixture(scope="session")
def stack(local_stack: dict[str, object]) -> Stack:
    return Stack(local_stack)
