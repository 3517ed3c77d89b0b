"""Table tests of the pure node lifecycle decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.decisions.node_plan import (
    PREEMPTED,
    READY,
    REGISTERED,
    UNUSABLE,
    NodeHealth,
    event_step,
    parse_wall_clock,
    past_wall_clock,
    reap_plan,
    reaper_watch_since,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("kind", "current", "target", "setup", "kick", "release"), [
    (REGISTERED, None, "preparing", True, False, False),
    (REGISTERED, "starting", "preparing", True, False, False),
    (REGISTERED, "preparing", "preparing", True, False, False),  # duplicate: Setup again (agents dedupe)
    (REGISTERED, "idle", None, False, False, False),  # late: already ready
    (READY, "starting", "idle", False, True, False),  # ready overtook registered
    (READY, "preparing", "idle", False, True, False),
    (READY, "idle", "idle", False, True, False),
    (READY, "running", None, False, False, False),  # a late duplicate must not free a busy node
    (READY, "leaving", None, False, False, False),
    (UNUSABLE, "preparing", "unusable", False, False, False),
    (UNUSABLE, "running", "unusable", False, False, True),
    (UNUSABLE, "leaving", None, False, False, False),
    (PREEMPTED, "running", "leaving", False, False, True),
    (PREEMPTED, "leaving", "leaving", False, False, True),
    (PREEMPTED, None, None, False, False, False),
])
def test_event_steps(kind, current, target, setup, kick, release):
    step = event_step(kind, current)
    assert (step.target, step.send_setup, step.kick, step.release_job) == (target, setup, kick, release)


def node(node_id: str, state: str, since_s: float = 0, registered_s: float | None = 0, job: str = "") -> NodeHealth:
    registered = None if registered_s is None else NOW - timedelta(seconds=registered_s)
    return NodeHealth(node_id, state, NOW - timedelta(seconds=since_s), registered, job_key=job)


@pytest.mark.parametrize(("name", "nodes", "beats", "lost", "stuck"), [
    ("fresh heartbeat", [node("a", "idle", 100, 100)], {"a": 5}, [], []),
    ("heartbeat just inside", [node("a", "running", 100, 100)], {"a": 15}, [], []),
    ("heartbeat just past", [node("a", "running", 100, 100)], {"a": 16}, ["a"], []),
    ("no heartbeat, registered long ago", [node("a", "idle", 100, 100)], {}, ["a"], []),
    ("no heartbeat yet, just registered", [node("a", "preparing", 1, 1)], {}, [], []),
    ("starting within start timeout", [node("a", "starting", 50, None)], {}, [], []),
    ("starting past start timeout", [node("a", "starting", 61, None)], {}, [], ["a"]),
    ("starting but alive (event in flight)", [node("a", "starting", 99, None)], {"a": 1}, [], []),
    ("preparing too long but alive", [node("a", "preparing", 61, 61)], {"a": 1}, [], ["a"]),
    ("unusable is parked, not reaped", [node("a", "unusable", 999, 999)], {}, [], []),
    ("leaving without job is the reconciler's", [node("a", "leaving", 999, 999)], {}, [], []),
    ("leaving with a job is watched", [node("a", "leaving", 999, 999, job="j")], {}, ["a"], []),
])
def test_reap_plan(name, nodes, beats, lost, stuck):
    heartbeats = {k: NOW - timedelta(seconds=v) for k, v in beats.items()}
    plan = reap_plan(nodes, heartbeats, NOW, heartbeat_timeout_s=15, start_timeout_s=60)
    assert [x.node.node_id for x in plan.lost] == lost, name
    assert [x.node_id for x in plan.stuck] == stuck, name


def test_silence_from_before_the_reaper_s_watch_proves_nothing():
    """After an outage (or a suspended host) a node's last beat is old: it gets a whole timeout from the
    start of the reaper's watch, and is lost only if it stays silent through it."""
    beats = {"a": NOW - timedelta(seconds=100)}
    watched = [node("a", "idle", 200, 200)]
    assert reap_plan(watched, beats, NOW, 15, 60, watching_since=NOW - timedelta(seconds=14)).lost == []
    late = reap_plan(watched, beats, NOW, 15, 60, watching_since=NOW - timedelta(seconds=16)).lost
    assert [x.node.node_id for x in late] == ["a"] and late[0].last_seen == NOW - timedelta(seconds=100)
    assert [x.node.node_id for x in reap_plan(watched, beats, NOW, 15, 60).lost] == ["a"]  # no watch given


@pytest.mark.parametrize(("name", "since", "end", "now", "expected"), [
    ("first tick of a process", None, None, 100, 100),
    ("after a tick that could not read storage", None, 98, 100, 100),
    ("a regular tick", 10, 98, 100, 10),
    ("a gap of a whole timeout", 10, 80, 100, 100),
    ("a gap just under a timeout", 10, 86, 100, 10),
])
def test_the_reaper_s_watch_begins_again_after_it_was_blind(name, since, end, now, expected):
    assert reaper_watch_since(_at(since), _at(end), NOW + timedelta(seconds=now), heartbeat_timeout_s=15) \
        == _at(expected), name


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else NOW + timedelta(seconds=seconds)


def test_lost_reports_last_sign_of_life():
    plan = reap_plan([node("a", "idle", 100, 100)], {"a": NOW - timedelta(seconds=40)}, NOW, 15, 60)
    assert plan.lost[0].last_seen == NOW - timedelta(seconds=40)


@pytest.mark.parametrize(("value", "seconds"), [("PT30S", 30), ("P7D", 7 * 86400), ("PT1H30M", 5400),
                                                 (None, None), ("", None), ("not a duration", None)])
def test_parse_wall_clock(value, seconds):
    parsed = parse_wall_clock(value)
    assert (parsed.total_seconds() if parsed else None) == seconds


def test_past_wall_clock():
    limit = parse_wall_clock("PT30S")
    assert not past_wall_clock(NOW - timedelta(seconds=40), limit, NOW, grace_s=15)
    assert past_wall_clock(NOW - timedelta(seconds=46), limit, NOW, grace_s=15)
    assert not past_wall_clock(None, limit, NOW, 0) and not past_wall_clock(NOW, None, NOW, 0)
