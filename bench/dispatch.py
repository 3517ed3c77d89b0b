"""Dispatch benchmark: N no-op jobs (/bin/true) on a 2-node local cluster, through the official SDK.

Prints throughput over the makespan (first submit to last end), submit->start latency under load
(p50/p99), and submit->start latency one job at a time on an idle cluster (p50/p99).

How it measures: submit time is taken on the client just before `jobs.begin_create`; start and end
times are the service's `executionInfo.startTime`/`endTime` (the node agent's report that the task
started/ended, stamped by the service when it processes the event). Run on the local stack
(Azurite, the local trigger host, local node agents) in a fresh state directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.mgmt.batchai import BatchAI, models  # noqa: E402

from bench import breakdown  # noqa: E402
from bench.breakdown import pct  # noqa: E402
from shared.cli.context import as_mapping, make_client  # noqa: E402
from shared.localstack.stack import start_stack, stop_stack  # noqa: E402


def wait_jobs(client: BatchAI, rg: str, ws: str, exp: str, names: list[str],
              timeout_s: float) -> dict[str, models.Job]:
    """Poll until every named job ended. The figures come from service stamps, so the polling only
    needs to notice the end; it lists the experiment once a second to keep its own load small."""
    deadline = time.monotonic() + timeout_s
    done: dict[str, models.Job] = {}
    while len(done) < len(names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(names) - len(done)} jobs did not finish in {timeout_s:.0f} s")
        for job in client.jobs.list_by_experiment(rg, ws, exp):
            if job.name in names and job.execution_state in ("succeeded", "failed"):
                done[job.name] = job
        if len(done) < len(names):
            time.sleep(1.0)
    return done


def wait_job(client: BatchAI, rg: str, ws: str, exp: str, name: str, timeout_s: float) -> models.Job:
    """Poll one job (a get, not a list: the idle figures must not pay for listing every job)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.jobs.get(rg, ws, exp, name)
        if job.execution_state in ("succeeded", "failed"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {name} did not finish in {timeout_s:.0f} s")
        time.sleep(0.05)


METHOD = """how it was measured:
  - local stack in a fresh state directory: Azurite, the local trigger host (function_app.py), a
    manual 2-node cluster (STANDARD_D1: whole-node packing, one job per node at a time);
  - jobs are created with the official SDK (azure-mgmt-batchai 7.0.0) over HTTPS with polling=False;
    the load phase submits all N jobs at once from 8 client threads, then the idle phase submits one
    job at a time, each after the previous one ended;
  - submit = the client's clock just before jobs.begin_create; start = executionInfo.startTime (the
    node agent's stamp on task-started); end = executionInfo.endTime (stamped by the service when it
    handles task-exited); throughput = N / (last end - first submit);
  - the stage breakdown reads each job's internal history; function durations come from host.log;
    stack CPU per job is the CPU time Azurite, the host and the agents used during the load phase
    (the bench client's own CPU excluded), divided by N: a figure the machine's other load does
    not inflate the way it inflates latencies;
  - storage calls are the requests Azurite's access log shows during the load phase (every part of
    the stack: API, triggers, timers, agents; the bench's own once-a-second listing included), by
    method and table, queue or container, divided by N;
  - all processes share this machine ({cores} cores) with whatever else runs on it."""


def run(args: argparse.Namespace, state: Path) -> None:
    endpoint = start_stack(state, storage_access_log=True)
    access_log = state / "logs" / "azurite.log"
    ep = as_mapping(endpoint)
    rg, sub = ep["resource_group"], ep["subscription_id"]
    client = make_client(ep, sub)
    client.workspaces.begin_create(rg, "bench", models.WorkspaceCreateParameters(location="local")).result()
    client.clusters.begin_create(rg, "bench", "c2", models.ClusterCreateParameters(
        vm_size="STANDARD_D1", scale_settings=models.ScaleSettings(
            manual=models.ManualScaleSettings(target_node_count=2)),
        user_account_settings=models.UserAccountSettings(admin_user_name="bench", admin_user_password="x"),
    )).result()
    client.experiments.begin_create(rg, "bench", "e").result()
    cluster_id = (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.BatchAI"
                  "/workspaces/bench/clusters/c2")
    deadline = time.monotonic() + 120
    while (client.clusters.get(rg, "bench", "c2").node_state_counts.idle_node_count or 0) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the 2 nodes did not become idle")
        time.sleep(0.2)

    def params() -> models.JobCreateParameters:
        return models.JobCreateParameters(
            cluster=models.ResourceId(id=cluster_id), node_count=1,
            std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT",
            custom_toolkit_settings=models.CustomToolkitSettings(command_line="/bin/true"))

    def submit(name: str) -> tuple[str, datetime]:
        at = datetime.now(UTC)
        client.jobs.begin_create(rg, "bench", "e", name, params(), polling=False)
        return name, at

    # Under load: all N at once from 8 client threads.
    procs = breakdown.stack_processes(endpoint.pids)
    cpu_before = breakdown.cpu_seconds(procs)
    load_since = datetime.now()
    log_start = access_log.stat().st_size
    names = [f"load-{i:04d}" for i in range(args.jobs)]
    with ThreadPoolExecutor(8) as pool:
        submitted = dict(pool.map(submit, names))
    done = wait_jobs(client, rg, "bench", "e", names, timeout_s=60 + args.jobs)
    starts = {n: done[n].execution_info.start_time for n in names}
    ends = {n: done[n].execution_info.end_time for n in names}
    makespan = (max(ends.values()) - min(submitted.values())).total_seconds()
    load_lat = [(starts[n] - submitted[n]).total_seconds() * 1000 for n in names]
    failed = [n for n in names if done[n].execution_state != "succeeded"]
    cpu_after = breakdown.cpu_seconds(procs)
    calls = breakdown.storage_calls(access_log, log_start, access_log.stat().st_size)

    # Idle: one at a time, each after the previous ended.
    idle_since = datetime.now()
    idle_lat = []
    idle_submitted: dict[str, datetime] = {}
    for i in range(args.idle_samples):
        name, at = submit(f"idle-{i:03d}")
        idle_submitted[name] = at
        job = wait_job(client, rg, "bench", "e", name, timeout_s=60)
        idle_lat.append((job.execution_info.start_time - at).total_seconds() * 1000)

    print(f"jobs: {args.jobs} no-op jobs on 2 local nodes ({len(failed)} failed)")
    print(f"throughput: {args.jobs / makespan:.1f} jobs/s over a makespan of {makespan:.1f} s "
          f"(goal >= 60 jobs/s, twice tuned Slurm here)")
    print(f"submit->start under load: p50 {pct(load_lat, 0.5):.0f} ms, p99 {pct(load_lat, 0.99):.0f} ms")
    print(f"submit->start idle (n={args.idle_samples}): p50 {pct(idle_lat, 0.5):.0f} ms, "
          f"p99 {pct(idle_lat, 0.99):.0f} ms, mean {statistics.mean(idle_lat):.0f} ms (goal p50 <= 100 ms, "
          f"p99 <= 300 ms)")
    print("\n".join(breakdown.cpu_lines(cpu_before, cpu_after, args.jobs)) + " (goal <= 50 ms)")
    total = sum(calls.values())
    print(f"storage calls per job under load: {total / args.jobs:.1f} (goal <= 13; {total} requests in Azurite's "
          f"access log during the load phase); the most frequent per job:")
    for what, count in calls.most_common(12):
        print(f"  {what:<40} {count / args.jobs:6.2f}")
    print(f"machine load average during the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    if args.breakdown:
        conn = ep["storage_connection_string"]
        records = breakdown.job_records(conn, set(names) | set(idle_submitted))
        host_log = state / "logs" / "host.log"
        print("\n".join(breakdown.summary("stages under load:", breakdown.stages(
            {n: r for n, r in records.items() if n in submitted}, submitted))))
        print("\n".join(breakdown.summary("stages idle:", breakdown.stages(
            {n: r for n, r in records.items() if n in idle_submitted}, idle_submitted))))
        load_fns = breakdown.function_durations(host_log, load_since)
        idle_fns = breakdown.function_durations(host_log, idle_since)
        print("\n".join(breakdown.summary("host functions (load and idle phases):", load_fns)))
        print("\n".join(breakdown.summary("host functions (idle phase):", idle_fns)))
    print(METHOD.format(cores=os.cpu_count()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--idle-samples", type=int, default=20)
    parser.add_argument("--state-dir", default=None, help="default: a new temporary directory")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running afterwards")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="print only the headline figures")
    args = parser.parse_args()

    state = Path(args.state_dir or tempfile.mkdtemp(prefix="batchai-bench-"))
    try:
        run(args, state)
    finally:
        if not args.keep_stack:
            stop_stack(state)
        print(f"state directory (logs): {state}")


if __name__ == "__main__":
    main()
