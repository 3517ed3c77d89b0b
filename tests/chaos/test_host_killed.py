"""kill -9 of the trigger host while jobs are being submitted, through the API and the submissions
queue, then `start_stack`: only the host restarts (storage and the nodes keep running, same pids),
every acknowledged submission becomes exactly one job that ends, with its outputs, and nothing ran in
two places at once."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from azure.mgmt.batchai import BatchAI

from shared.adapters import storage
from shared.localstack.stack import stack_status, start_stack
from tests.chaos.conftest import MAX_RETRIES, Chaos
from tests.chaos.runs import RunLog, check_jobs, job_command, output_directories
from tests.e2e.conftest import StaticToken
from tests.polling import wait_until

pytestmark = pytest.mark.slow

WS, EXP, CLUSTER = "chaos", "host", "two"
NODES, API_JOBS, QUEUE_JOBS = 2, 12, 4
KILL_AFTER = 5  # acknowledged API submissions before the kill
TICKS = 5


class Submitter(threading.Thread):
    """A client that submits each job until the API acknowledges it (the initial PUT answered), as a
    client of a service that is restarting would. After `pause_after` acknowledgements it waits for
    `resume` (set once the host is killed), so the next submissions meet the dead host."""

    def __init__(self, chaos: Chaos, names: list[str], log: RunLog, pause_after: int) -> None:
        super().__init__(name="submitter", daemon=True)
        self.chaos, self.names, self.log, self.pause_after = chaos, names, log, pause_after
        self.resume = threading.Event()
        self.acknowledged: list[str] = []
        self.refused = 0  # attempts that failed (the host was down)
        self.client = BatchAI(StaticToken(chaos.endpoint["token"]), chaos.sub, base_url=chaos.endpoint["url"],
                              connection_verify=chaos.endpoint["ca_file"], retry_total=0)

    def run(self) -> None:
        for name in self.names:
            if len(self.acknowledged) == self.pause_after:
                self.resume.wait(120)

            def acknowledged(name: str = name) -> bool:
                try:
                    self.client.jobs.begin_create(self.chaos.rg, WS, EXP, name,
                                                  self.chaos.job_parameters(WS, CLUSTER, name, self.log, TICKS))
                    return True
                except Exception:  # noqa: BLE001 - the host is down: try again, as a client would
                    self.refused += 1
                    return False
            wait_until(acknowledged, 180, interval=0.3, what=f"the submission of {name} to be acknowledged")
            self.acknowledged.append(name)


def queue_message(chaos: Chaos, name: str, log: RunLog) -> str:
    out = output_directories()[0]
    return json.dumps({"workspace": WS, "experiment": EXP, "jobName": name,
                       "authorization": f"Bearer {chaos.endpoint['token']}",
                       "properties": {"cluster": {"id": chaos.cluster_id(WS, CLUSTER)},
                                      "stdOutErrPathPrefix": "$AZ_BATCHAI_JOB_TEMP",
                                      "outputDirectories": [{"id": out.id, "pathPrefix": out.path_prefix}],
                                      "customToolkitSettings": {"commandLine": job_command(log.on_node, name, TICKS)}}})


def test_host_killed_during_submissions(chaos: Chaos) -> None:
    chaos.setup(WS, EXP, CLUSTER, NODES)
    log = chaos.run_log()
    before = chaos.pids()
    agents = chaos.live_agents(WS, CLUSTER)
    assert len(agents) == NODES
    submissions = storage.queue(chaos.endpoint["storage_connection_string"], storage.Q_SUBMISSIONS)
    api_names = [f"api{i:02d}" for i in range(API_JOBS)]
    queued = [f"queue{i:02d}" for i in range(QUEUE_JOBS)]

    submitter = Submitter(chaos, api_names, log, pause_after=KILL_AFTER)
    submitter.start()
    for name in queued[:QUEUE_JOBS // 2]:  # taken by the host before or as it dies
        submissions.send_message(queue_message(chaos, name, log))
    wait_until(lambda: len(submitter.acknowledged) >= KILL_AFTER, 120, what=f"{KILL_AFTER} acknowledged jobs")
    os.kill(before["host"], signal.SIGKILL)
    wait_until(lambda: not stack_status(chaos.state_dir)["running"], 30, what="the host to be seen dead")
    submitter.resume.set()
    wait_until(lambda: submitter.refused > 0, 60, what="a submission to meet the dead host")
    for name in queued[QUEUE_JOBS // 2:]:  # sent while no host runs: storage acknowledges them
        submissions.send_message(queue_message(chaos, name, log))

    after = start_stack(chaos.state_dir, fixed_ports=False, settings={"BATCHAI_MAX_RETRIES": str(MAX_RETRIES)})
    assert after.pids["host"] != before["host"]
    assert after.pids["azurite"] == before["azurite"] and after.pids["emulator"] == before["emulator"]
    submitter.join(timeout=300)
    assert not submitter.is_alive() and submitter.acknowledged == api_names

    names = api_names + queued
    chaos.all_ended(WS, EXP, names)
    verdict = check_jobs(chaos, WS, EXP, names, log)
    assert all(state == "succeeded" for state in verdict.states.values()), verdict.errors
    chaos.back_at_target(WS, CLUSTER, NODES)
    assert chaos.live_agents(WS, CLUSTER) == agents  # the nodes ran on through the host's restart
    assert check_jobs(chaos, WS, EXP, names, log).states == verdict.states
