"""The reaper timer's watch, against an Azurite of its own (a tick reaps every cluster it finds): a
node whose beats stopped while the reaper could not look (its host suspended, or storage
unreachable) is not taken as lost on the first tick after; it gets a whole heartbeat timeout from
then, and is lost only if it stays silent through it.

The timer's clock is the test's (`Watch(clock)`); the heartbeat's time is the storage server's."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared import ports
from shared.adapters import storage
from shared.config import AZURITE_ACCOUNT, AZURITE_KEY, Settings, azurite_connection_string
from shared.services import node_state
from shared.services.reaper import Watch, heartbeats
from tests.conftest import own_azurite
from tests.nodes.helpers import cluster_ref, put_cluster
from tests.nodes.test_reconcile import bring_up

TIMEOUT = 15.0


class Clock:
    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        assert self.now is not None
        return self.now


@pytest.fixture(scope="module")
def own_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from own_azurite(tmp_path_factory, "reaper-azurite")


@pytest.fixture()
def quick(own_storage: str, tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings.from_env(), storage_connection_string=own_storage,
                               state_dir=tmp_path / "state", provider="local", heartbeat_timeout_s=TIMEOUT)


@pytest.fixture()
def unreachable(quick: Settings) -> Iterator[Settings]:
    """The same settings with storage down: a port bound here that nobody listens on (refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        conn = azurite_connection_string("127.0.0.1", port, port, port, AZURITE_ACCOUNT, AZURITE_KEY)
        yield dataclasses.replace(quick, storage_connection_string=conn)


def beating_node(settings: Settings, name: str) -> tuple[str, str, datetime]:
    """A ready node of a new cluster that beat once: (cluster key, node id, the beat's server time)."""
    ref = cluster_ref(name)
    put_cluster(settings.storage_connection_string, ref, {"manual": {"targetNodeCount": 1}})
    node_id = f"{name}-n0"
    conn = settings.storage_connection_string
    ports.of(conn).blobs.write(storage.C_HEARTBEATS, storage.heartbeat_blob(ref.key, node_id), b"")
    beat = heartbeats(conn, ref.key)[node_id]
    long_ago = beat - timedelta(seconds=300)
    assert node_state.adopt(settings, ref.key, node_id, "127.0.0.1", long_ago)  # as the reconciler records it
    bring_up(settings, ref.key, node_id, long_ago)
    assert node_state.get(settings, ref.key, node_id)["state"] == "idle"
    return ref.key, node_id, beat


def lost_at(watch: Watch, clock: Clock, settings: Settings, key: str, at: datetime) -> list[str]:
    clock.now = at
    return [node for result in watch.tick(settings) if result.cluster_key == key for node in result.lost]


def test_a_host_that_slept_gives_every_node_a_timeout_before_it_takes_one_as_lost(quick: Settings) -> None:
    key, node_id, beat = beating_node(quick, "slept")
    clock = Clock()
    watch = Watch(clock)
    assert lost_at(watch, clock, quick, key, beat + timedelta(seconds=1)) == []
    # The host slept: its next tick comes long after the node's last beat, which it could not have seen.
    woke = beat + timedelta(seconds=TIMEOUT + 30)
    assert lost_at(watch, clock, quick, key, woke) == []
    assert lost_at(watch, clock, quick, key, woke + timedelta(seconds=TIMEOUT - 1)) == []
    assert lost_at(watch, clock, quick, key, woke + timedelta(seconds=TIMEOUT + 1)) == [node_id]


def test_a_tick_that_could_not_read_storage_starts_the_watch_again(quick: Settings,
                                                                    unreachable: Settings) -> None:
    key, node_id, beat = beating_node(quick, "outage")
    clock = Clock()
    watch = Watch(clock)
    for seconds in [*range(-100, 10, 10), 5]:  # a watch of long standing, ticks closer than a timeout
        assert lost_at(watch, clock, quick, key, beat + timedelta(seconds=seconds)) == []
    clock.now = beat + timedelta(seconds=12)
    with pytest.raises(Exception, match="refused"):
        watch.tick(unreachable)  # storage is down: the node cannot beat either
    back = beat + timedelta(seconds=TIMEOUT + 2)  # less than a timeout after the last tick that looked
    assert lost_at(watch, clock, quick, key, back) == []  # its beat is older than a timeout: it proves nothing
    assert lost_at(watch, clock, quick, key, back + timedelta(seconds=10)) == []
    assert lost_at(watch, clock, quick, key, back + timedelta(seconds=TIMEOUT + 1)) == [node_id]
