"""Pure decisions of a node's lifecycle: what a node event does to a node row, which nodes the
reaper takes as lost or stuck, and whether a job is past its wall-clock limit. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import isodate

REGISTERED = "node-registered"
READY = "node-ready"
UNUSABLE = "node-unusable"
PREEMPTED = "node-preempted"
NODE_EVENT_KINDS = (REGISTERED, READY, UNUSABLE, PREEMPTED)

#: Where each event moves a node from each state; a state not listed ignores the event
#: (a duplicate or late event). `None` as current state means the row does not exist yet.
EVENT_TARGET: dict[str, dict[str | None, str]] = {
    REGISTERED: {None: "preparing", "starting": "preparing", "preparing": "preparing"},
    READY: {None: "idle", "starting": "idle", "preparing": "idle", "idle": "idle"},
    UNUSABLE: {None: "unusable", "starting": "unusable", "preparing": "unusable", "idle": "unusable",
               "running": "unusable", "unusable": "unusable"},
    PREEMPTED: {"starting": "leaving", "preparing": "leaving", "idle": "leaving", "running": "leaving",
                "unusable": "leaving", "leaving": "leaving"},
}


@dataclass(frozen=True)
class EventStep:
    target: str | None  # the state to move to (equal to the current one: a duplicate), None: ignore
    send_setup: bool = False  # answer a registration with the cluster's Setup message
    kick: bool = False  # ask for a scheduling pass
    release_job: bool = False  # requeue the job the node holds
    remove_instance: bool = False


def event_step(kind: str, current: str | None) -> EventStep:
    target = EVENT_TARGET.get(kind, {}).get(current)
    if target is None:
        return EventStep(None)
    if kind == REGISTERED:
        return EventStep(target, send_setup=True)
    if kind == READY:
        return EventStep(target, kick=True)
    if kind == UNUSABLE:
        return EventStep(target, release_job=current == "running")
    return EventStep(target, release_job=True, remove_instance=True)


@dataclass(frozen=True)
class NodeHealth:
    node_id: str
    state: str
    state_since: datetime | None
    registered_at: datetime | None
    job_key: str = ""
    assignment_id: str = ""


@dataclass(frozen=True)
class Lost:
    node: NodeHealth
    last_seen: datetime | None


@dataclass
class ReapPlan:
    lost: list[Lost]
    stuck: list[NodeHealth]  # never became ready within the start timeout: unusable


def reap_plan(nodes: Sequence[NodeHealth], heartbeats: Mapping[str, datetime], now: datetime,
              heartbeat_timeout_s: float, start_timeout_s: float, watching_since: datetime | None = None) -> ReapPlan:
    """A registered node is lost when its last sign of life (heartbeat, else its registration) is
    older than the heartbeat timeout; a node still starting or preparing after the start timeout
    is stuck. Lost nodes, leaving nodes without a job and unusable nodes (parked so the user sees
    why; scaling removes them) are the reconciler's, not the reaper's.

    `watching_since` is when the reaper began looking without a break (see `reaper_watch_since`):
    silence from before it proves nothing (storage was down, or the machine slept), so a node is
    lost only once it stayed silent for a whole timeout of that watch."""
    lost: list[Lost] = []
    stuck: list[NodeHealth] = []
    for node in nodes:
        if node.state in ("lost", "unusable") or (node.state == "leaving" and not node.job_key):
            continue
        seen = max((t for t in (heartbeats.get(node.node_id), node.registered_at) if t is not None),
                   default=None)
        alive_until = max((t for t in (seen, watching_since) if t is not None), default=None)
        if node.state == "starting":
            if seen is not None and (now - seen).total_seconds() <= heartbeat_timeout_s:
                continue  # alive; its registration event is still on its way
            if node.state_since and (now - node.state_since).total_seconds() > start_timeout_s:
                stuck.append(node)
            continue
        if alive_until is None or (now - alive_until).total_seconds() > heartbeat_timeout_s:
            lost.append(Lost(node, seen))
        elif node.state == "preparing" and node.state_since \
                and (now - node.state_since).total_seconds() > start_timeout_s:
            stuck.append(node)
    return ReapPlan(lost, stuck)


def reaper_watch_since(previous_since: datetime | None, previous_end: datetime | None, now: datetime,
                       heartbeat_timeout_s: float) -> datetime:
    """When the reaper's current watch began: now, when it never looked (a fresh process, or its last
    tick could not read storage) or stopped looking for more than a heartbeat timeout (the host was
    suspended or its ticks were missed); else the watch goes on."""
    if previous_since is None or previous_end is None or (now - previous_end).total_seconds() > heartbeat_timeout_s:
        return now
    return previous_since


def parse_wall_clock(value: str | None) -> timedelta | None:
    """`constraints.maxWallClockTime` (ISO 8601 duration, e.g. "P7D", "PT30S"); None when absent."""
    if not value:
        return None
    try:
        duration = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError):
        return None  # the API validates it; an unreadable limit is left to the agent
    return duration if isinstance(duration, timedelta) else duration.totimedelta(start=datetime(2000, 1, 1))


def past_wall_clock(started_at: datetime | None, limit: timedelta | None, now: datetime, grace_s: float) -> bool:
    """A job ran longer than its limit plus a grace (the agent enforces the limit; the reaper only
    catches jobs whose agent could not)."""
    if started_at is None or limit is None:
        return False
    return (now - started_at).total_seconds() > limit.total_seconds() + grace_s
