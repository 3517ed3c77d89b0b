"""The cluster size decision: snapshot in (scale settings, node rows, provider instances, pending
demand, now), decision out (provider target, nodes to take out and how, rows to adopt or drop,
allocation state). Pure: no I/O, no clock; a late, missed or doubled tick decides from the same
snapshot and therefore does no harm.

Definitions used throughout:
- An *active instance* is one the provider reports as creating or running (not deleting, not failed).
- A *failed* instance is dead (a killed machine, an agent process that exited): a node that had
  joined (idle, running, or leaving with a job) is *lost* at once, not after the heartbeat timeout:
  its row leaves the schedulable set, its job is requeued, its instance removed, its row dropped. A
  node that failed while starting or preparing is shown unusable instead (the user sees why).
- *Capacity* is what counts towards the cluster's size: active instances whose row is not leaving
  or lost (instances with no row yet count too, they are nodes starting), plus failed instances
  whose row is unusable (kept so the user sees why). Starting nodes count: no double scale-up.
- *Busy* nodes are capacity nodes in state running (they hold a job).
- *Demand* is the nodes needed by pending jobs: the sum of `nodeCount` of every pending job that
  could ever fit (`nodeCount <= maximumNodeCount`); a gang larger than the cluster can be is not
  demand (it would only hold nodes that can never run it). Under `gpu-slots` packing demand counts
  slots: the new nodes (of `node_slots` slots each) the pending jobs need once the free slots of
  the busy nodes are used (`gpu_slots.nodes_needed`), so small jobs share nodes instead of each
  asking for one.

Autoscale: wanted = clamp(busy + demand, min, max) (and at least initialNodeCount on the first
reconcile). Scale-up starts `wanted - capacity` instances, at most `max_starts` per tick when the
provider sets a cap (the local one does: each instance is a process started during the tick).
Scale-down removes only nodes idle for longer than the idle timeout (oldest first); nodes
unusable for longer than it are replaced whatever the demand. Never a starting, preparing or busy node.

Manual: wanted = targetNodeCount. Lowering takes out unusable nodes first, then starting, preparing,
idle (longest idle first), and only then busy nodes, applying nodeDeallocationOption to those:
requeue or terminate (their job is stopped, the node removed at once) or waitforjobcompletion (the
node is marked leaving and removed once its job has ended).

Bring your own (`nodeSource` bringYourOwn): the cluster's nodes are machines their owner joined, so
the scale settings are ignored: nothing is started or taken out for size or idleness, wanted is the
capacity there is. A node whose instance failed (its join token revoked or expired) is lost
whatever its state, its row dropped and its instance removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.decisions.gpu_slots import GPU_SLOTS, WHOLE_NODE, nodes_needed

STEADY = "steady"
RESIZING = "resizing"

REQUEUE = "requeue"
TERMINATE = "terminate"
WAIT = "waitforjobcompletion"
DEALLOCATION_OPTIONS = (REQUEUE, TERMINATE, WAIT)

ACTIVE_INSTANCE = ("creating", "running")


@dataclass(frozen=True)
class ScalePolicy:
    """The cluster's scaleSettings, reduced to what the decision needs."""

    manual_target: int | None = None
    deallocation: str = REQUEUE
    minimum: int = 0
    maximum: int = 0
    initial: int = 0
    bring_your_own: bool = False  # nodes join; the scale settings are ignored

    @property
    def is_manual(self) -> bool:
        return self.manual_target is not None

    @classmethod
    def from_properties(cls, properties: dict) -> ScalePolicy:
        if properties.get("nodeSource") == "bringYourOwn":
            return cls(manual_target=None, bring_your_own=True)
        scale = properties.get("scaleSettings") or {}
        manual = scale.get("manual")
        auto = scale.get("autoScale")
        if auto and not manual:
            lo = max(0, int(auto.get("minimumNodeCount") or 0))
            hi = max(lo, int(auto.get("maximumNodeCount") or 0))
            return cls(minimum=lo, maximum=hi, initial=int(auto.get("initialNodeCount") or 0))
        manual = manual or {}
        option = str(manual.get("nodeDeallocationOption") or REQUEUE).lower()
        return cls(manual_target=max(0, int(manual.get("targetNodeCount") or 0)),
                   deallocation=option if option in DEALLOCATION_OPTIONS else REQUEUE)


@dataclass(frozen=True)
class NodeView:
    node_id: str
    state: str  # NodeState value
    job_key: str = ""
    assignment_id: str = ""
    idle_since: datetime | None = None
    state_since: datetime | None = None
    leaving_reason: str = ""
    free_slots: int = 0  # slots its jobs leave (gpu-slots packing)


@dataclass(frozen=True)
class InstanceView:
    node_id: str
    state: str  # provider Instance.state


@dataclass(frozen=True)
class ScaleInput:
    policy: ScalePolicy
    nodes: Sequence[NodeView]
    instances: Sequence[InstanceView]
    pending_node_counts: Sequence[int]  # nodeCount of each pending job
    now: datetime
    idle_timeout_s: float
    first_reconcile: bool = False  # initialNodeCount applies
    max_starts: int | None = None  # most instances one tick may start (None: no cap)
    packing: str = WHOLE_NODE
    pending_slots: Sequence[int] = ()  # slots per node of each pending job, as pending_node_counts (1 if absent)
    node_slots: int = 1  # slots a node of the cluster offers


@dataclass(frozen=True)
class Drain:
    node_id: str
    action: str  # REQUEUE | TERMINATE | WAIT | "" (no job: just leave)
    job_key: str = ""
    assignment_id: str = ""


@dataclass
class ScaleDecision:
    provider_target: int  # instances the provider should have after removing `remove`
    wanted: int  # the capacity the policy asks for
    remove: list[str] = field(default_factory=list)  # instances to delete now
    drain: list[Drain] = field(default_factory=list)  # rows to mark leaving first (job action per node)
    adopt: list[str] = field(default_factory=list)  # instances with no row: create a starting row
    gone: list[NodeView] = field(default_factory=list)  # rows whose instance vanished: requeue, drop row
    lost: list[NodeView] = field(default_factory=list)  # joined rows whose instance failed: requeue, remove, drop
    start_failed: list[str] = field(default_factory=list)  # starting/preparing rows whose process failed
    allocation_state: str = STEADY


def demand(pending_node_counts: Sequence[int], maximum: int) -> int:
    """Nodes needed by pending jobs that could ever fit in `maximum` nodes."""
    return sum(n for n in pending_node_counts if 0 < n <= maximum)


def slot_demand(inp: ScaleInput, busy: Sequence[NodeView]) -> int:
    """Nodes needed by pending jobs under gpu-slots packing, beyond the busy nodes' free slots."""
    slots = list(inp.pending_slots) + [1] * (len(inp.pending_node_counts) - len(inp.pending_slots))
    return nodes_needed(list(zip(inp.pending_node_counts, slots, strict=False)), [n.free_slots for n in busy],
                        inp.node_slots, inp.policy.maximum)


def _idle_for(node: NodeView, now: datetime) -> float:
    since = node.idle_since or node.state_since
    return (now - since).total_seconds() if since else 0.0


def _in_state_for(node: NodeView, now: datetime) -> float:
    return (now - node.state_since).total_seconds() if node.state_since else 0.0


def decide(inp: ScaleInput) -> ScaleDecision:
    rows = {n.node_id: n for n in inp.nodes}
    instances = {i.node_id: i for i in inp.instances}
    active = {i.node_id for i in inp.instances if i.state in ACTIVE_INSTANCE}
    failed = {i.node_id for i in inp.instances if i.state == "failed"}

    gone = [n for n in inp.nodes if n.node_id not in instances]
    adopt = sorted(i for i in active if i not in rows)
    start_failed = sorted(i for i in failed if i in rows and rows[i].state in ("starting", "preparing"))
    lost = [rows[i] for i in sorted(failed) if i in rows and (_joined(rows[i]) or inp.policy.bring_your_own)]
    if inp.policy.bring_your_own:
        start_failed = []
    # Dead and unknown, or dead after joining: clean up (lost nodes are replaced like any other).
    remove: list[str] = sorted(i for i in failed if i not in rows) + [n.node_id for n in lost]

    capacity: list[NodeView] = [rows.get(i, NodeView(i, "starting")) for i in sorted(active)
                                if rows.get(i) is None or rows[i].state not in ("leaving", "lost")]
    # A failed start is reported as unusable this tick and stays (counted) until scaled away.
    capacity += [rows[i] for i in sorted(failed) if i in rows
                 and (rows[i].state == "unusable" or i in start_failed)]
    capacity = [NodeView(n.node_id, "unusable", state_since=inp.now) if n.node_id in start_failed else n
                for n in capacity]

    # Leaving rows: remove once their job has ended (or at once when no job holds them).
    waiting: list[str] = []
    for n in inp.nodes:
        if n.state == "leaving" and n.node_id in instances and instances[n.node_id].state != "deleting" \
                and n not in lost:
            if n.job_key:
                waiting.append(n.node_id)
            else:
                remove.append(n.node_id)

    policy = inp.policy
    busy = [n for n in capacity if n.state == "running"]
    if policy.bring_your_own:
        wanted = len(capacity)
    elif policy.is_manual:
        wanted = policy.manual_target or 0
    else:
        needed = slot_demand(inp, busy) if inp.packing == GPU_SLOTS else demand(inp.pending_node_counts,
                                                                                  policy.maximum)
        wanted = min(max(len(busy) + needed, policy.minimum), policy.maximum)
        if inp.first_reconcile:
            wanted = max(wanted, min(max(policy.initial, policy.minimum), policy.maximum))

    # Autoscale replaces nodes unusable for longer than the idle timeout, whatever the demand.
    forced = [] if policy.is_manual or policy.bring_your_own else [n for n in capacity if n.state == "unusable"
                                          and _in_state_for(n, inp.now) > inp.idle_timeout_s]
    rest = [n for n in capacity if n not in forced]
    excess = max(0, len(rest) - wanted)
    drain: list[Drain] = []
    if forced or excess:
        for node in forced + _removal_order(rest, policy, inp.now, inp.idle_timeout_s)[:excess]:
            if node.state == "running":
                drain.append(Drain(node.node_id, policy.deallocation, node.job_key, node.assignment_id))
                if policy.deallocation != WAIT:
                    remove.append(node.node_id)
            else:
                drain.append(Drain(node.node_id, ""))
                if node.node_id in active or node.node_id in failed:
                    remove.append(node.node_id)
    taken = {d.node_id for d in drain}
    kept_capacity = len([n for n in capacity if n.node_id not in taken])
    to_start = max(0, wanted - kept_capacity)
    if inp.max_starts is not None:
        to_start = min(to_start, inp.max_starts)
    remove_set = set(remove)
    kept_active = len([i for i in active if i not in remove_set])
    provider_target = kept_active + to_start

    # Rows of vanished instances are dropped this tick: they no longer hold the cluster resizing.
    resizing = (bool(remove) or to_start > 0 or bool(waiting) or bool(adopt)
                or any(i.state in ("creating", "deleting") for i in inp.instances)
                or any(n.state in ("starting", "leaving") and n.node_id in instances for n in inp.nodes))
    return ScaleDecision(provider_target=provider_target, wanted=wanted, remove=sorted(remove_set),
                         drain=drain, adopt=adopt, gone=gone, lost=lost, start_failed=start_failed,
                         allocation_state=RESIZING if resizing else STEADY)


def _joined(node: NodeView) -> bool:
    """A node that had joined the cluster and may hold work (so its failure loses that work)."""
    return node.state in ("idle", "running") or (node.state == "leaving" and bool(node.job_key))


def _removal_order(capacity: list[NodeView], policy: ScalePolicy, now: datetime, idle_timeout_s: float
                   ) -> list[NodeView]:
    """The nodes that may go, best candidates first."""
    unusable = [n for n in capacity if n.state == "unusable"]
    idle = sorted((n for n in capacity if n.state == "idle"), key=lambda n: -_idle_for(n, now))
    if not policy.is_manual:
        return [n for n in idle if _idle_for(n, now) > idle_timeout_s]
    starting = [n for n in capacity if n.state == "starting"]
    preparing = [n for n in capacity if n.state == "preparing"]
    running = sorted((n for n in capacity if n.state == "running"), key=lambda n: n.node_id, reverse=True)
    return unusable + starting + preparing + idle + running
