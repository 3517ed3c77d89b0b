"""API benchmark: GET of one experiment through the local stack's front door (https, the owner's bearer
token), from 1 client and then from 50 concurrent clients (asyncio + httpx, one connection each), for a
fixed number of seconds each. Prints requests per second and p50/p99 latency beside the goal (p99 <= 50 ms
at 50 clients), with the load average and the host's CPU per request (the trigger host's CPU time over
the phase divided by its requests).

    python bench/api.py
    python bench/api.py --seconds 20 --clients 50 --state-dir /tmp/apibench --keep-stack
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.breakdown import pct  # noqa: E402
from shared.cli.context import as_mapping, make_client  # noqa: E402
from shared.localstack.stack import start_stack, stop_stack  # noqa: E402

GOAL_P99_MS = 50.0
API = "2018-05-01"


async def client_loop(url: str, headers: dict[str, str], verify: str | bool, until: float,
                      latencies: list[float], errors: list[int]) -> None:
    async with httpx.AsyncClient(verify=verify, headers=headers, timeout=30) as http:
        while time.monotonic() < until:
            start = time.perf_counter()
            response = await http.get(url, params={"api-version": API})
            if response.status_code == 200:
                latencies.append((time.perf_counter() - start) * 1000)
            else:
                errors.append(response.status_code)


def phase(url: str, headers: dict[str, str], verify: str | bool, clients: int, seconds: float,
          host: psutil.Process) -> None:
    latencies: list[float] = []
    errors: list[int] = []

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(client_loop(url, headers, verify, until, latencies, errors) for _ in range(clients)))

    cpu_before = sum(host.cpu_times()[:2])
    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    cpu = sum(host.cpu_times()[:2]) - cpu_before
    done = len(latencies)
    print(f"{clients:>3} client(s): {done / elapsed:6.0f} req/s, p50 {pct(latencies, 0.5):6.1f} ms, "
          f"p99 {pct(latencies, 0.99):6.1f} ms, mean {statistics.fmean(latencies or [0]):6.1f} ms, "
          f"host CPU {cpu * 1000 / max(done, 1):5.1f} ms/request, {len(errors)} errors "
          f"(goal p99 <= {GOAL_P99_MS:g} ms at 50 clients; load average {os.getloadavg()[0]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--keep-stack", action="store_true")
    args = parser.parse_args()
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="batchai-apibench-"))
    endpoint = start_stack(state, fixed_ports=False)
    ep = as_mapping(endpoint)
    try:
        sub, rg, ws, exp = ep["subscription_id"], ep["resource_group"], "bench", "api"
        client = make_client(ep, sub)
        client.workspaces.begin_create(rg, ws, {"location": "eastus"}).result()
        client.experiments.begin_create(rg, ws, exp).result()
        url = (f"{ep['url']}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.BatchAI"
               f"/workspaces/{ws}/experiments/{exp}")
        headers = {"Authorization": f"Bearer {ep['token']}"}
        verify: str | bool = ep.get("ca_file") or True
        host = psutil.Process(endpoint.pids["host"])
        phase(url, headers, verify, 1, min(args.seconds, 5.0), host)  # warm-up, not printed twice
        for clients in (1, args.clients):
            phase(url, headers, verify, clients, args.seconds, host)
    finally:
        if not args.keep_stack:
            stop_stack(state)


if __name__ == "__main__":
    main()
