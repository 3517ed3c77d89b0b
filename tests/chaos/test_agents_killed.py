"""kill -9 of node agents under running jobs (processes): each kill takes the agent's task with it,
the service requeues the job, and in the end every job ran to one terminal state with a reason, the
succeeded ones have their outputs, no job ran in two places at once, and the cluster is back at its
target with exactly that many agents."""

from __future__ import annotations

import os
import signal

import pytest

from tests.chaos.conftest import Chaos
from tests.chaos.runs import check_jobs, node_id_of
from tests.polling import wait_until

pytestmark = pytest.mark.slow

WS, EXP, CLUSTER = "chaos", "agents", "three"
NODES, JOBS, KILLS = 3, 8, 3
TICKS = 30  # about 3 s of work per run


def test_agents_killed_under_running_jobs(chaos: Chaos) -> None:
    chaos.setup(WS, EXP, CLUSTER, NODES)
    log = chaos.run_log()
    names = [f"job{i:02d}" for i in range(JOBS)]
    for name in names:
        chaos.recorded_job(WS, EXP, CLUSTER, name, log, TICKS)

    killed: list[tuple[str, str]] = []  # (job, node id) whose agent was killed under it
    for _ in range(KILLS):
        def running_victim() -> tuple[str, str] | None:
            """The latest started run whose node has a live agent not killed yet, and that has not ended."""
            lines = log.lines()
            ended = {(line.job, line.run) for line in lines if line.kind == "end"}
            agents = chaos.live_agents(WS, CLUSTER)
            for line in reversed(lines):
                node = node_id_of(line.node)
                if line.kind == "start" and (line.job, line.run) not in ended and node in agents \
                        and node not in {n for _, n in killed}:
                    return line.job, node
            return None

        job, node = wait_until(running_victim, 120, interval=0.1, what="a run to kill the agent under")
        os.kill(chaos.agent_pid(node), signal.SIGKILL)
        killed.append((job, node))

    chaos.all_ended(WS, EXP, names)
    verdict = check_jobs(chaos, WS, EXP, names, log)
    chaos.back_at_target(WS, CLUSTER, NODES)
    assert all(state == "succeeded" for state in verdict.states.values()), verdict.errors
    runs = log.runs()
    ended = {(line.job, node_id_of(line.node)) for line in log.lines() if line.kind == "end"}
    for job, node in killed:  # a victim that had not finished was run again on another node, for a reason
        if (job, node) in ended:
            continue  # it finished as its agent was killed
        assert len(runs[job]) >= 2 and any(node_id_of(n) != node for n, _ in runs[job][1:]), (job, runs[job])
        assert verdict.errors[job], f"{job} was requeued without a recorded reason"
    assert check_jobs(chaos, WS, EXP, names, log).states == verdict.states  # terminal states stay
