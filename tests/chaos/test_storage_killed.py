"""kill -9 of the storage process (Azurite) while jobs run, then `start_stack`: storage restarts alone
on its saved data (the host keeps running, same pid), the start says what may have been
lost, and every submission that storage had saved before the crash ends, with its outputs, nothing
having run in two places at once; the cluster is back at its target.

What storage acknowledged in its last seconds before the crash (up to Azurite's 5 s save interval)
may be lost: the jobs' submissions are made to be saved before the crash (two saves after the last
one), the jobs' progress is not (a job may have moved since), and the service must pick up from there.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from shared.localstack.stack import stack_status, start_stack
from tests.chaos.conftest import MAX_RETRIES, Chaos
from tests.chaos.runs import check_jobs
from tests.polling import wait_until

pytestmark = pytest.mark.slow

WS, EXP, CLUSTER = "chaos", "storage", "two"
NODES, JOBS = 2, 6
TICKS = 40  # about 4 s of work per run: the crash comes while jobs run


def saved_twice(location: Path) -> None:
    """Wait until Azurite has saved its tables twice from now: the second save began after now."""
    table_db = location / "__azurite_db_table__.json"
    seen = [table_db.stat().st_mtime_ns]

    def saved() -> bool:
        mtime = table_db.stat().st_mtime_ns
        if mtime != seen[-1]:
            seen.append(mtime)
        return len(seen) >= 3
    wait_until(saved, 60, interval=0.2, what="two saves of storage's tables")


def test_storage_killed_while_jobs_run_and_restarted(chaos: Chaos) -> None:
    chaos.setup(WS, EXP, CLUSTER, NODES)
    log = chaos.run_log()
    names = [f"job{i:02d}" for i in range(JOBS)]
    for name in names:
        chaos.recorded_job(WS, EXP, CLUSTER, name, log, TICKS)
    saved_twice(chaos.state_dir / "azurite")
    wait_until(lambda: len(log.runs()) >= 1, 120, interval=0.1, what="a job to run")
    before = chaos.pids()

    os.kill(before["azurite"], signal.SIGKILL)
    wait_until(lambda: not stack_status(chaos.state_dir)["running"], 30, what="storage to be seen dead")
    after = start_stack(chaos.state_dir, fixed_ports=False, settings={"BATCHAI_MAX_RETRIES": str(MAX_RETRIES)})
    assert after.pids["azurite"] != before["azurite"]
    assert after.pids["host"] == before["host"] and after.pids["emulator"] == before["emulator"]
    assert len(after.notices) == 1 and "Storage did not stop cleanly" in after.notices[0]

    chaos.all_ended(WS, EXP, names)
    verdict = check_jobs(chaos, WS, EXP, names, log)
    assert all(state == "succeeded" for state in verdict.states.values()), verdict.errors
    chaos.back_at_target(WS, CLUSTER, NODES)
    assert check_jobs(chaos, WS, EXP, names, log).states == verdict.states
