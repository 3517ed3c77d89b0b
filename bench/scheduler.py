"""Scheduling-decision benchmark: the pure `schedule()` on one cluster of N nodes (default 1,000) with M
pending jobs (default 10,000), as one scheduling pass sees it: a quarter of the nodes running a job,
jobs of three priorities submitted over an hour, one in ten a gang of 2-8 nodes, one in a hundred
larger than the cluster. Seeded, so every run decides the same thing. It prints the median and
the slowest of `--repeat` passes beside the goal (50 ms per pass), the machine's load average, and
what the pass decided (placements and waiting reasons), for both packings.

    python bench/scheduler.py
    python bench/scheduler.py --nodes 1000 --jobs 10000 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.decisions.gpu_slots import GPU_SLOTS, WHOLE_NODE  # noqa: E402
from shared.decisions.scheduler import NodeView, PendingJob, SchedulingRequest, schedule  # noqa: E402

GOAL_MS = 50.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def request(nodes: int, jobs: int, packing: str, seed: int = 7) -> SchedulingRequest:
    rng = random.Random(seed)
    views = []
    for i in range(nodes):
        busy = i % 4 == 0
        gpus = 4 if packing == GPU_SLOTS else 0
        used = rng.randint(1, 3) if busy and packing == GPU_SLOTS else (1 if busy else 0)
        views.append(NodeView(f"node-{i:05d}", "running" if busy else "idle", slots=max(gpus, 1), used_slots=used,
                              jobs=(f"running-{i}",) if busy else (), gpus=gpus,
                              busy_gpus=frozenset(range(used)) if gpus else frozenset()))
    pending = []
    for j in range(jobs):
        roll = rng.random()
        count = nodes + 1 if roll < 0.01 else rng.randint(2, 8) if roll < 0.11 else 1
        pending.append(PendingJob(f"sub|rg|ws|exp|job{j:06d}", rng.choice(("high", "normal", "normal", "low")),
                                  T0 + timedelta(seconds=rng.uniform(0, 3600)), node_count=count,
                                  slots=rng.randint(1, 2) if packing == GPU_SLOTS else 1))
    return SchedulingRequest(views, pending, T0 + timedelta(hours=1), [f"asg-{k}" for k in range(jobs)], packing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.nodes} nodes x {args.jobs} pending jobs; "
          f"{args.repeat} passes each")
    for packing in (WHOLE_NODE, GPU_SLOTS):
        req = request(args.nodes, args.jobs, packing)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            reply = schedule(req)
            times.append((time.perf_counter() - start) * 1000)
        reasons = Counter(w.reason for w in reply.waiting)
        print(f"{packing:>10}: median {statistics.median(times):7.1f} ms, slowest {max(times):7.1f} ms "
              f"(goal <= {GOAL_MS:g} ms); {len(reply.assignments)} placed, waiting {dict(sorted(reasons.items()))}")


if __name__ == "__main__":
    main()
