"""Batch-scoring benchmark: N digit images (default 2,000) scored through a manifest on a 2-node local
cluster, against the same scoring code run as one direct loop in one process (one core).

For each itemsPerJob value it prints:
- run time: manifest upload to the run's `succeeded` (client clock, polling the API every 0.25 s);
- parallel efficiency = direct time / (2 x run time);
- per-job overhead = (2 x run time - direct time) / jobs: node time per job not spent scoring
  (dispatch, process start and imports, item list and model mount, uploads, settling), and its
  in-job part: median job wall time (executionInfo start..end) minus that job's share of the direct time;
- where the run's time goes: upload -> run recorded (blob scan), recorded -> first job started
  (listing, item lists, job creation, dispatch), first start -> last job end, last end -> run ended
  (the reconcile tick, output copies, summary).
The scoring code is examples/scoring/score.py: download the item by its SAS URL, classify it with
the digits model, plus `--work-ms` of extra model compute per item (default 20 ms, a stand-in for a
heavier model; 0 measures the bare pipeline). The final job is left out of the runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.scoring import score  # noqa: E402
from examples.scoring.model import load  # noqa: E402
from examples.scoring.workflow import MODEL_CONTAINER, Workflow  # noqa: E402
from shared.adapters import output_blobs  # noqa: E402
from shared.cli.context import as_mapping  # noqa: E402
from shared.localstack.stack import start_stack, stop_stack  # noqa: E402

GOALS = {100: 0.90, 250: 0.90, 1000: 0.90}  # parallel efficiency per itemsPerJob


def direct(flow: Workflow, names: list[str], work_ms: float, state: Path) -> float:
    """The same per-item code in one loop: fetch by SAS URL, score. Seconds."""
    model = state / "model.npz"
    model.write_bytes(flow.read(MODEL_CONTAINER, "model.npz"))
    conn = flow.endpoint["storage_connection_string"]
    expires = datetime.now(UTC) + timedelta(hours=2)
    started = time.perf_counter()
    params = load(model)
    for name in names:
        url = output_blobs.read_url(conn, "bench-in", name, expires)
        score.score_item(params, score.fetch(url), work_ms)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--items-per-job", type=int, nargs="+", default=[100, 250, 1000])
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args()

    quiet = os.getloadavg()[0]  # before the bench adds its own load (the goal's "quiet machine": below 0.5)
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="batchai-bench-scoring-"))
    endpoint = as_mapping(start_stack(state, fixed_ports=False))
    try:
        flow = Workflow(endpoint, "bench", cluster="c2", experiment="score")
        flow.resources(nodes=2)
        flow.upload_model()
        names = flow.upload_images("bench-in", "img/", args.items)
        print(f"{args.items} items, {args.work_ms:g} ms extra model compute per item, 2 local nodes; "
              f"load average before the bench started: {quiet:.2f} (a quiet machine: below 0.5)", flush=True)
        base = direct(flow, names, args.work_ms, state)
        print(f"direct loop (1 process): {base:.2f} s ({1000 * base / args.items:.1f} ms/item)", flush=True)
        print(f"{'itemsPerJob':>11} {'jobs':>5} {'run s':>7} {'efficiency':>10} {'overhead/job s':>14} "
              f"{'in-job s':>8}", flush=True)
        for per_job in args.items_per_job:
            manifest = flow.manifest("bench-in", "img/", "bench-out", f"k{per_job}/", per_job, args.work_ms,
                                     final=False)
            started = time.perf_counter()
            uploaded = datetime.now(UTC)
            run = flow.start(f"k{per_job}", manifest)
            body = flow.wait(run, timeout_s=1800)
            elapsed = time.perf_counter() - started
            if body["properties"]["state"] != "succeeded":
                print(f"run {run} failed: {body['properties'].get('stateReason')}", flush=True)
                return 1
            jobs = [j for j in flow.client.jobs.list_by_experiment(flow.rg, "bench", "score")
                    if j.name.startswith(run)]
            walls = [(j.execution_info.end_time - j.execution_info.start_time).total_seconds() for j in jobs]
            share = base * per_job / args.items
            in_job = statistics.median(walls) - share
            overhead = (2 * elapsed - base) / len(jobs)
            efficiency = base / (2 * elapsed)
            goal = GOALS.get(per_job)
            verdict = "" if goal is None else f"  (goal >= {goal:.2f}: {'met' if efficiency >= goal else 'not met'})"
            print(f"{per_job:>11} {len(jobs):>5} {elapsed:>7.2f} {efficiency:>10.3f} {overhead:>14.2f} "
                  f"{in_job:>8.2f}{verdict}", flush=True)
            props = body["properties"]
            created, ended = (datetime.fromisoformat(props[k].replace("Z", "+00:00"))
                              for k in ("creationTime", "endTime"))
            first = min(j.execution_info.start_time for j in jobs)
            last = max(j.execution_info.end_time for j in jobs)
            phases = [("recorded", created - uploaded), ("to first start", first - created),
                      ("jobs running", last - first), ("to run end", ended - last)]
            print("            " + ", ".join(f"{k} {v.total_seconds():.2f} s" for k, v in phases), flush=True)
    finally:
        stop_stack(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
