"""Stop and restart benchmark of the local stack, and the storage crash window. Prints figures only.

Stack (processes topology, a fresh state directory, a manual 2-node cluster with a job running on
each node):
- fresh start: `start_stack` on an empty state directory, until the API answers;
- graceful stop with jobs in flight: `stop_stack` (every part SIGTERM'd in order), and whether each
  part exited on SIGTERM;
- start after that stop, until the API answers, and until both cut jobs run again (requeued);
- kill -9 of the trigger host, then `start_stack`: only the host restarts (storage's pid unchanged);
- kill -9 of Azurite, then `start_stack`: only storage restarts, and the start's notice.

Storage crash window (Azurite alone, in its own location): Azurite keeps tables, queue messages
and blob metadata in memory and saves them every 5 s (hard-coded), so an acknowledged write is
durable only from the next save on:
- save interval: the times between successive saves of its table database under a steady trickle
  of writes (the file's modification time, polled every 20 ms);
- acknowledged -> saved: for writes at random moments, the time from the write's acknowledgement
  until the saved table database contains it;
- kill -9 after an acknowledged write: for each delay, whether the write survived a restart. Each
  write comes just after Azurite (re)started, so its first save is about 5 s away: close to the
  worst case, a write made just after a save.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.data.tables import TableServiceClient  # noqa: E402
from azure.mgmt.batchai import BatchAI, models  # noqa: E402

from shared.cli.context import as_mapping, make_client  # noqa: E402
from shared.localstack.azurite import Azurite, start_azurite  # noqa: E402
from shared.localstack.stack import stack_status, start_stack, stop_stack  # noqa: E402

WS, EXP, CLUSTER = "bench", "restart", "c2"
TABLE_DB = "__azurite_db_table__.json"


def wait(predicate: object, timeout_s: float, what: str, interval: float = 0.05) -> float:
    """Poll until `predicate()` is true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{what} did not happen in {timeout_s:.0f} s")
        time.sleep(interval)
    return time.monotonic() - start


def timed(action: object) -> tuple[float, object]:
    start = time.monotonic()
    result = action()  # type: ignore[operator]
    return time.monotonic() - start, result


def setup_cluster(client: BatchAI, rg: str, sub: str) -> str:
    client.workspaces.begin_create(rg, WS, models.WorkspaceCreateParameters(location="local")).result()
    client.experiments.begin_create(rg, WS, EXP).result()
    client.clusters.begin_create(rg, WS, CLUSTER, models.ClusterCreateParameters(
        vm_size="STANDARD_D1", scale_settings=models.ScaleSettings(
            manual=models.ManualScaleSettings(target_node_count=2)),
        user_account_settings=models.UserAccountSettings(admin_user_name="bench", admin_user_password="x"),
    )).result()
    wait(lambda: (client.clusters.get(rg, WS, CLUSTER).node_state_counts.idle_node_count or 0) == 2, 180,
         "2 idle nodes", interval=0.2)
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.BatchAI/workspaces/{WS}/clusters/{CLUSTER}"


def running(client: BatchAI, rg: str, names: list[str]) -> bool:
    states = {j.name: j.execution_state for j in client.jobs.list_by_experiment(rg, WS, EXP)}
    return all(states.get(n) == "running" for n in names)


def bench_stack(state: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    seconds, endpoint = timed(lambda: start_stack(state, fixed_ports=False))
    rows.append(("fresh start (until the API answers)", f"{seconds:.1f} s"))
    ep = as_mapping(endpoint)
    rg, sub = ep["resource_group"], ep["subscription_id"]
    client = make_client(ep, sub)
    cluster_id = setup_cluster(client, rg, sub)
    names = ["long0", "long1"]
    for name in names:
        client.jobs.begin_create(rg, WS, EXP, name, models.JobCreateParameters(
            cluster=models.ResourceId(id=cluster_id), node_count=1, std_out_err_path_prefix="$AZ_BATCHAI_JOB_TEMP",
            custom_toolkit_settings=models.CustomToolkitSettings(command_line="sleep 600")), polling=False)
    wait(lambda: running(client, rg, names), 180, "both jobs to run", interval=0.2)

    seconds, report = timed(lambda: stop_stack(state))
    clean = all(report.values())  # type: ignore[union-attr]
    rows.append(("stop with 2 jobs running", f"{seconds:.1f} s ({'each part exited on SIGTERM' if clean else report})"))

    seconds, endpoint = timed(lambda: start_stack(state, fixed_ports=False))
    rows.append(("start after that stop (until the API answers)", f"{seconds:.1f} s"))
    client = make_client(as_mapping(endpoint), sub)
    requeued = wait(lambda: running(client, rg, names), 300, "the cut jobs to run again", interval=0.2)
    rows.append(("  ... until both cut jobs run again", f"+{requeued:.1f} s"))

    before = endpoint.pids  # type: ignore[attr-defined]
    os.kill(before["host"], signal.SIGKILL)
    wait(lambda: not stack_status(state)["running"], 30, "the host to be seen dead")
    seconds, after = timed(lambda: start_stack(state, fixed_ports=False))
    kept = after.pids["azurite"] == before["azurite"]  # type: ignore[attr-defined]
    rows.append(("host restart after kill -9 of the host", f"{seconds:.1f} s (Azurite pid "
                 f"{'unchanged' if kept else 'changed'})"))

    before = after.pids  # type: ignore[attr-defined]
    os.kill(before["azurite"], signal.SIGKILL)
    wait(lambda: not stack_status(state)["running"], 30, "storage to be seen dead")
    seconds, after = timed(lambda: start_stack(state, fixed_ports=False))
    kept = after.pids["host"] == before["host"]  # type: ignore[attr-defined]
    rows.append(("storage restart after kill -9 of Azurite", f"{seconds:.1f} s (host pid "
                 f"{'unchanged' if kept else 'changed'})"))
    notices = after.notices  # type: ignore[attr-defined]
    rows.append(("  ... notice at that start", notices[0][:100] + "..." if notices else "(none)"))

    seconds, report = timed(lambda: stop_stack(state))
    rows.append(("final stop (jobs running again)", f"{seconds:.1f} s"))
    return rows


def write_row(server: Azurite, key: str) -> None:
    table = TableServiceClient.from_connection_string(server.connection_string).create_table_if_not_exists("bench")
    table.upsert_entity({"PartitionKey": "p", "RowKey": key})


def saved(location: Path, key: str) -> bool:
    try:
        return key in (location / TABLE_DB).read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return False  # read in the middle of a save: look again


def save_intervals(location: Path, writes_s: float) -> list[float]:
    server = start_azurite(location)
    try:
        db, seen, i = location / TABLE_DB, [], 0
        last = db.stat().st_mtime if db.exists() else None
        next_write = deadline = time.monotonic()
        deadline += writes_s
        while time.monotonic() < deadline:
            if time.monotonic() >= next_write:  # a steady trickle: Azurite saves only when something changed
                write_row(server, f"trickle{i}")
                i, next_write = i + 1, next_write + 0.5
            mtime = db.stat().st_mtime if db.exists() else None
            if mtime != last:
                seen.append(time.monotonic())
                last = mtime
            time.sleep(0.02)
        return [b - a for a, b in zip(seen, seen[1:], strict=False)]
    finally:
        server.stop()


def ack_to_saved(location: Path, samples: int) -> list[float]:
    server = start_azurite(location)
    try:
        lags = []
        for i in range(samples):
            time.sleep(random.uniform(0, 5))
            key = f"lag{i}-{random.getrandbits(32):08x}"
            write_row(server, key)
            lags.append(wait(lambda key=key: saved(location, key), 30, f"the save of {key}", interval=0.02))
        return lags
    finally:
        server.stop()


def crash_survival(location: Path, delays: list[float]) -> list[tuple[float, bool]]:
    results = []
    server = start_azurite(location)
    for delay in delays:
        key = f"crash-{delay}-{random.getrandbits(32):08x}"
        write_row(server, key)
        time.sleep(delay)
        os.kill(server.pid, signal.SIGKILL)
        assert server.process is not None
        server.process.wait()
        server = start_azurite(location, server.blob_port, server.queue_port, server.table_port)
        table = TableServiceClient.from_connection_string(server.connection_string).get_table_client("bench")
        try:
            kept = any(e["RowKey"] == key for e in table.list_entities())
        except Exception:  # noqa: BLE001 - the table itself was lost with the write
            kept = False
        results.append((delay, kept))
    server.stop()
    return results


def bench_storage(root: Path, samples: int, delays: list[float]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    intervals = save_intervals(root / "intervals", 30.0)
    if intervals:
        rows.append(("Azurite save interval under writes", f"median {statistics.median(intervals):.2f} s, "
                     f"min {min(intervals):.2f} s, max {max(intervals):.2f} s ({len(intervals)} intervals)"))
    lags = ack_to_saved(root / "lag", samples)
    rows.append(("acknowledged -> saved", f"median {statistics.median(lags):.2f} s, max {max(lags):.2f} s "
                 f"({len(lags)} writes)"))
    survived = crash_survival(root / "crash", delays)
    rows.append(("kill -9 after an acknowledged write", ", ".join(
        f"{d:g} s: {'kept' if kept else 'LOST'}" for d, kept in survived)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state-dir", type=Path, help="where the stack and Azurite keep their state (default: a temp dir)")
    p.add_argument("--lag-samples", type=int, default=12, help="writes timed from acknowledgement to save")
    p.add_argument("--crash-delays", default="0,1,2,3,4,6", help="seconds between a write and the kill -9")
    p.add_argument("--skip-stack", action="store_true", help="only the storage crash window")
    args = p.parse_args()
    root = args.state_dir or Path(tempfile.mkdtemp(prefix="batchai-restart-bench-"))
    rows = [] if args.skip_stack else bench_stack(root / "stack")
    rows += bench_storage(root / "azurite", args.lag_samples, [float(d) for d in args.crash_delays.split(",")])
    width = max(len(name) for name, _ in rows)
    print(f"restart bench ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; state in {root})")
    for name, value in rows:
        print(f"  {name:{width}}  {value}")


if __name__ == "__main__":
    main()
