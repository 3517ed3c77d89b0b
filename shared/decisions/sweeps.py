"""Sweep decisions: which parameters a child job gets, which running children the early-termination
policy stops, and which run is the best. Pure: the spec and the children's metric values in, decisions
out; no clock and no randomness that the seed does not fix.

Sampling. Grid: the cartesian product of the choices, parameters in name order, child i gets the i-th
point. Random: child i gets a draw from a generator seeded by (seed, i) alone, so a child's parameters
never depend on how many ticks or children came before it (a repeated tick samples the same values).

Early termination, with Azure ML HyperDrive's semantics. Each value a run reports for the primary
metric is one interval: report k is interval k. A run is judged at interval k when k is a multiple of
`evaluationInterval` and k >= `delayEvaluation` (Azure ML: "starting at evaluation interval
delay_evaluation"); a tick judges each running run at the latest such interval it has reached, against
every run (running or ended) that reached the same interval (the first `MAX_REPORTS` reports of a run are
kept and judged: shared.domain.sweeps):
- bandit: the best value at interval k sets a bar: best / (1 + slackFactor) or best - slackAmount when
  maximizing, best * (1 + slackFactor) or best + slackAmount when minimizing; a run beyond the bar stops;
- medianStopping: a run whose best value over intervals 1..k is worse than the median of the other
  runs' running averages over 1..k stops;
- truncationSelection: the runs at interval k are ranked by their value there; a run among the worst
  truncationPercentage % (rounded down; at least one run is needed for anything to stop) stops.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.sweeps import Parameter, Policy


def grid_point(parameters: Sequence[Parameter], index: int) -> dict[str, Any]:
    ordered = sorted(parameters, key=lambda p: p.name)
    points = itertools.islice(itertools.product(*(p.values for p in ordered)), index, index + 1)
    values = next(points)
    return dict(zip((p.name for p in ordered), values, strict=True))


def _draw(p: Parameter, rng: random.Random) -> Any:
    if p.kind == "choice":
        return p.values[rng.randrange(len(p.values))]
    u = rng.uniform(p.low, p.high)
    if p.kind == "loguniform":
        return math.exp(u)
    if p.kind == "quniform":
        q = round(u / p.q) * p.q
        return int(q) if float(q).is_integer() and float(p.q).is_integer() else q
    return u


def random_point(parameters: Sequence[Parameter], seed: int, index: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}:{index}")
    return {p.name: _draw(p, rng) for p in sorted(parameters, key=lambda p: p.name)}


def sample(parameters: Sequence[Parameter], sampling: str, seed: int, index: int) -> dict[str, Any]:
    return grid_point(parameters, index) if sampling == "grid" else random_point(parameters, seed, index)


@dataclass(frozen=True)
class RunMetrics:
    index: int
    values: tuple[float, ...]  # the primary metric's reports, in order
    live: bool  # still running: the policy may stop it


@dataclass(frozen=True)
class Stop:
    index: int
    reason: str


def _better(goal: str, a: float, b: float) -> bool:
    return a > b if goal == "maximize" else a < b


def due_interval(policy: Policy, reports: int) -> int | None:
    """The latest interval (1-based report count) at which the policy judges a run with `reports` values."""
    k = reports - reports % policy.evaluation_interval
    return k if k >= 1 and k >= policy.delay_evaluation else None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _bandit(policy: Policy, goal: str, metric: str, run: RunMetrics, k: int, peers: list[RunMetrics]) -> str | None:
    values = [p.values[k - 1] for p in peers]
    best = max(values) if goal == "maximize" else min(values)
    mine = run.values[k - 1]
    if policy.slack_factor is not None:
        sf = policy.slack_factor
        bar = best / (1 + sf) if goal == "maximize" else best * (1 + sf)
        how = f"best {_fmt(best)} {'/' if goal == 'maximize' else '*'} (1 + slack factor {_fmt(sf)})"
    else:
        sa = policy.slack_amount or 0.0
        bar = best - sa if goal == "maximize" else best + sa
        how = f"best {_fmt(best)} {'-' if goal == 'maximize' else '+'} slack amount {_fmt(sa)}"
    if _better(goal, bar, mine):
        side = "below" if goal == "maximize" else "above"
        return f"bandit policy: {metric} {_fmt(mine)} at interval {k} is {side} {_fmt(bar)} ({how})"
    return None


def _median(goal: str, metric: str, run: RunMetrics, k: int, peers: list[RunMetrics]) -> str | None:
    others = [p for p in peers if p.index != run.index]
    if not others:
        return None
    median = statistics.median(statistics.fmean(p.values[:k]) for p in others)
    mine = run.values[:k]
    best = max(mine) if goal == "maximize" else min(mine)
    if _better(goal, median, best):
        return (f"medianStopping policy: best {metric} {_fmt(best)} over intervals 1..{k} is worse than "
                f"{_fmt(median)}, the median of {len(others)} other runs' running averages")
    return None


def _truncation(policy: Policy, goal: str, metric: str, run: RunMetrics, k: int,
                peers: list[RunMetrics]) -> str | None:
    cut = len(peers) * policy.truncation_percentage // 100
    if cut < 1:
        return None
    ranked = sorted(peers, key=lambda p: (p.values[k - 1] if goal == "minimize" else -p.values[k - 1], p.index))
    worst = {p.index for p in ranked[len(ranked) - cut:]}
    if run.index in worst:
        return (f"truncationSelection policy: {metric} {_fmt(run.values[k - 1])} at interval {k} is among the worst "
                f"{policy.truncation_percentage}% ({cut} of {len(peers)} runs)")
    return None


def judge(policy: Policy | None, goal: str, metric: str, runs: Sequence[RunMetrics]) -> list[Stop]:
    """The running runs the policy stops now, each with the reason (the numbers it compared)."""
    if policy is None:
        return []
    stops: list[Stop] = []
    for run in runs:
        k = due_interval(policy, len(run.values)) if run.live else None
        if k is None:
            continue
        peers = [p for p in runs if len(p.values) >= k and all(math.isfinite(v) for v in p.values[:k])]
        if run not in peers:  # a run whose metric is not a number is as bad as it gets
            stops.append(Stop(run.index, f"{policy.kind} policy: {metric} is not a finite number at interval {k}"))
            continue
        if policy.kind == "bandit":
            reason = _bandit(policy, goal, metric, run, k, peers)
        elif policy.kind == "medianStopping":
            reason = _median(goal, metric, run, k, peers)
        else:
            reason = _truncation(policy, goal, metric, run, k, peers)
        if reason is not None:
            stops.append(Stop(run.index, reason))
    return stops


@dataclass(frozen=True)
class Candidate:
    index: int
    job: str
    value: float | None  # its last reported value of the primary metric
    eligible: bool  # not stopped by the policy


def best_run(goal: str, candidates: Sequence[Candidate]) -> Candidate | None:
    """The run with the best last value among those the policy did not stop (ties: the earlier run)."""
    best: Candidate | None = None
    for c in sorted(candidates, key=lambda c: c.index):
        if c.eligible and c.value is not None and math.isfinite(c.value) and \
                (best is None or _better(goal, c.value, best.value or 0.0)):
            best = c
    return best
