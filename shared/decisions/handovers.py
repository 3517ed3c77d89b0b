"""Handovers storage may have lost, judged from the nodes' heartbeats (pure).

Storage acknowledges a write up to a few seconds before it is durable (Azurite saves every 5 s, and
its tables and queues separately), so a crash can lose an assignment message the service sent, or the
task-exited event a node sent, while the rows that say the job runs on that node survive. Then:

- a node that no longer lists an assignment the service still holds, in a heartbeat written well after
  the assignment was dispatched, never got it or ended it unheard: the assignment is sent again (a node
  runs an assignment id at most once, and answers a repeat of an ended one with its recorded end);
- a node that lists an assignment the service does not hold (the rows went back to before it) runs a
  stray: it is told to stop, so a job never runs in two places.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Beat:
    at: datetime  # the storage server's time of the heartbeat
    assignments: frozenset[str]  # what the node was running then


def unlisted(node_ids: Iterable[str], assignment_id: str, dispatched_at: datetime, beats: Mapping[str, Beat],
             after: timedelta) -> list[str]:
    """The nodes of a held assignment whose heartbeat, written at least `after` since its dispatch, does not
    list it (a node without a heartbeat is the reaper's)."""
    return [node for node in node_ids
            if (beat := beats.get(node)) is not None and beat.at - dispatched_at >= after
            and assignment_id not in beat.assignments]


def strays(beats: Mapping[str, Beat], held: set[str]) -> dict[str, list[str]]:
    """{node id: the assignments it runs that are not held}, from heartbeats read BEFORE the held set (an
    assignment created after the beats cannot be in them)."""
    found = {node: sorted(beat.assignments - held) for node, beat in beats.items()}
    return {node: ids for node, ids in found.items() if ids}
