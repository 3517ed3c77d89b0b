"""A graceful stop and start of the whole stack with jobs in flight: every process stops on SIGTERM
(no SIGKILL), the nodes are powered off with the stack, and at the next start the jobs that were
running are requeued (their nodes are gone), not failed; every job then succeeds with its outputs,
nothing ran in two places at once, and the cluster is back at its target."""

from __future__ import annotations

import pytest

from shared.localstack.stack import start_stack, stop_stack
from tests.chaos.conftest import MAX_RETRIES, Chaos, alive
from tests.chaos.runs import check_jobs
from tests.polling import wait_until

pytestmark = pytest.mark.slow

WS, EXP, CLUSTER = "chaos", "restart", "two"
NODES, JOBS = 2, 6
TICKS = 10  # about 1 s of work per run; the first run of the first two jobs works 60 s: the stop cuts them


def test_stack_restarted_with_jobs_in_flight(chaos: Chaos) -> None:
    chaos.setup(WS, EXP, CLUSTER, NODES)
    log = chaos.run_log()
    names = [f"job{i:02d}" for i in range(JOBS)]
    in_flight = names[:NODES]
    for name in names:
        chaos.recorded_job(WS, EXP, CLUSTER, name, log, TICKS, first_ticks=600 if name in in_flight else None)
    wait_until(lambda: all(log.started(job) for job in in_flight), 120, interval=0.1, what=f"{in_flight} to run")
    agents = chaos.live_agents(WS, CLUSTER)
    report = stop_stack(chaos.state_dir)
    assert report == {"host": True, "emulator": True, "azurite": True}, report  # each stopped on SIGTERM
    assert not any(alive(pid) for pid in agents.values())  # the nodes went down with the stack

    start_stack(chaos.state_dir, fixed_ports=False, settings={"BATCHAI_MAX_RETRIES": str(MAX_RETRIES)})
    chaos.all_ended(WS, EXP, names)
    verdict = check_jobs(chaos, WS, EXP, names, log)
    assert all(state == "succeeded" for state in verdict.states.values()), verdict.errors
    runs = log.runs()
    for job in in_flight:  # cut by the stop: requeued with the reason, run again
        assert len(runs[job]) == 2 and verdict.errors[job], (job, runs[job], verdict.errors[job])
    chaos.back_at_target(WS, CLUSTER, NODES)
    assert not set(chaos.live_agents(WS, CLUSTER)) & set(agents)  # new nodes replaced the stopped ones
    assert check_jobs(chaos, WS, EXP, names, log).states == verdict.states
