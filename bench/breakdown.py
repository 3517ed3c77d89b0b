"""Where the time of a dispatch benchmark run went: per-stage latencies from the jobs' own records
and per-function durations from the local trigger host's log.

Stages of one job (all stamps from this machine's clock):
- api: client submit -> `internal.submittedAt` (the API stored the job);
- queued: submittedAt -> the `assigned` history entry (the pass that placed it started);
- dispatch: assigned -> `executionInfo.startTime` (the node agent sent task-started);
- run: startTime -> `executionInfo.endTime` (the service handled task-exited);
- turnaround: on one node, a job's endTime -> the next job's assigned (the node was idle for it).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from shared.adapters import storage
from shared.adapters.resource_store import ResourceStore

_FUNCTION_LINE = re.compile(
    r"^(\S+ \S+) INFO batchai\.localhost: Execut(ing|ed) '(\w+)' \((?:\w+, )?id=([\w-]+)\)")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def job_records(conn: str, names: set[str]) -> dict[str, dict[str, Any]]:
    """The `internal` of each named job, by name."""
    out = {}
    for doc in ResourceStore(conn, storage.T_JOBS).scan():
        if doc.data.get("name") in names:
            out[doc.data["name"]] = doc.data.get("internal") or {}
    return out


def stages(records: dict[str, dict[str, Any]], submitted: dict[str, datetime]) -> dict[str, list[float]]:
    """Milliseconds spent in each stage, one value per job (turnaround: one per node handover)."""
    out: dict[str, list[float]] = defaultdict(list)
    by_node: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for name, internal in records.items():
        info = internal.get("executionInfo") or {}
        assigned = next((_at(h["at"]) for h in reversed(internal.get("history") or []) if h.get("to") == "assigned"),
                        None)
        if assigned is None or not info.get("startTime") or not info.get("endTime"):
            continue
        sub, start, end = _at(internal["submittedAt"]), _at(info["startTime"]), _at(info["endTime"])
        if name in submitted:
            out["api"].append((sub - submitted[name]).total_seconds() * 1000)
        out["queued"].append((assigned - sub).total_seconds() * 1000)
        out["dispatch"].append((start - assigned).total_seconds() * 1000)
        out["run"].append((end - start).total_seconds() * 1000)
        for node in internal.get("nodes") or []:
            by_node[node["node_id"]].append((assigned, end))
    for spans in by_node.values():
        spans.sort()
        for (_, end), (assigned, _) in zip(spans, spans[1:], strict=False):
            out["turnaround"].append((assigned - end).total_seconds() * 1000)
    return out


def function_durations(host_log: Path, since: datetime | None = None) -> dict[str, list[float]]:
    """Milliseconds of each function invocation in the host log (from `since`, local log time)."""
    started: dict[str, datetime] = {}
    out: dict[str, list[float]] = defaultdict(list)
    if not host_log.exists():
        return out
    for line in host_log.read_text(errors="replace").splitlines():
        m = _FUNCTION_LINE.match(line)
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if since is not None and at < since:
            continue
        if m.group(2) == "ing":
            started[m.group(4)] = at
        elif m.group(4) in started:
            out[m.group(3)].append((at - started.pop(m.group(4))).total_seconds() * 1000)
    return out


def summary(title: str, values: dict[str, list[float]]) -> list[str]:
    lines = [title]
    for name, ms in sorted(values.items()):
        if ms:
            lines.append(f"  {name:<24} n={len(ms):<5} p50 {pct(ms, 0.5):7.0f} ms  p90 {pct(ms, 0.9):7.0f} ms  "
                         f"total {sum(ms) / 1000:7.1f} s")
    return lines


def stack_processes(pids: dict[str, int]) -> dict[str, psutil.Process]:
    """The stack's processes by role: azurite, host, and the host's node agents."""
    out: dict[str, psutil.Process] = {}
    for role in ("azurite", "host"):
        if pids.get(role):
            out[role] = psutil.Process(pids[role])
    if "host" in out:
        agents = [c for c in out["host"].children(recursive=True) if "shared.agent" in " ".join(c.cmdline())]
        for i, agent in enumerate(sorted(agents, key=lambda c: c.pid)):
            out[f"agent{i + 1}"] = agent
    return out


def cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far (task processes excluded)."""
    out = {}
    for role, proc in procs.items():
        try:
            t = proc.cpu_times()
            out[role] = t.user + t.system
        except psutil.Error:
            out[role] = float("nan")
    return out


def cpu_lines(before: dict[str, float], after: dict[str, float], jobs: int) -> list[str]:
    used = {role: after[role] - before.get(role, 0.0) for role in after}
    total = sum(used.values())
    parts = ", ".join(f"{role} {ms * 1000 / jobs:.0f}" for role, ms in used.items())
    return [f"stack CPU per job under load: {total * 1000 / jobs:.0f} ms ({parts})"]


ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) /[^/ ]+/(?P<target>[^/?( ]*)[^"]*" (?P<status>\d{3})')


def storage_calls(log: Path, start: int, end: int) -> Counter[str]:
    """Requests in Azurite's access log between two byte offsets, by method and table, queue or container
    (node queues and heartbeat blobs folded into one name each)."""
    with log.open("rb") as f:
        f.seek(start)
        text = f.read(max(0, end - start)).decode(errors="replace")
    calls: Counter[str] = Counter()
    for match in ACCESS_LINE.finditer(text):
        target = re.sub(r"^node-[0-9a-f-]+$", "node-<id>", match["target"]) or "(account)"
        calls[f"{match['method']} {target}"] += 1
    return calls
