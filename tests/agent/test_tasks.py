"""The node agent runs assignments: environment, outputs, exit codes, streaming, stop, wall clock, idempotence."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from shared.adapters import storage
from shared.domain.messages import StopTask
from tests.agent.conftest import AgentProc, Events, assignment, blob_text, job_props, wait_until


def test_registers_with_inventory_and_heartbeats(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent(heartbeat_s=0.5)
    registered = events.wait(agent.node_id, "node-registered")
    inv = registered["inventory"]
    assert inv["cores"] == os.cpu_count()
    assert inv["memoryMb"] > 100
    assert inv["gpus"] == 0
    assert inv["address"] == "127.0.0.1"
    assert registered["cluster_key"] == agent.cluster_key
    blob = storage.blob_service(agent.conn).get_blob_client(
        storage.C_HEARTBEATS, storage.heartbeat_blob(agent.cluster_key, agent.node_id))

    def beat() -> str | None:
        if not blob.exists():
            return None
        props = blob.get_blob_properties()
        return props.etag if props.metadata.get("pid") == str(agent.process.pid) else None

    first = wait_until(beat, 15, what="a heartbeat")
    wait_until(lambda: beat() not in (None, first), 15, what="the next heartbeat")


def test_custom_job_sees_its_environment_and_uploads_outputs(start_agent: Callable[..., AgentProc],
                                                             events: Events) -> None:
    agent = start_agent()
    job = job_props('env | sort; echo trained > "$AZ_BATCHAI_OUTPUT_MODEL/m.txt"',
                    outputDirectories=[{"id": "MODEL", "pathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/out"}],
                    inputDirectories=[{"id": "DATA", "path": "$AZ_BATCHAI_JOB_MOUNT_ROOT/data"}],
                    environmentVariables=[{"name": "MY_SETTING", "value": "plain-value"}],
                    secrets=[{"name": "MY_SECRET", "value": "s3cr3t-value"}])
    a = assignment(agent, job)
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=30)
    assert exited["exit_code"] == 0 and "error" not in exited and exited["task_index"] == 0, exited
    assert len(events.starts(agent.node_id, a.assignment_id)) == 1  # its start reported, once
    stdout = "\n" + (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or "")  # a line may be first
    for var in ("AZ_BATCHAI_MOUNT_ROOT", "AZ_BATCHAI_JOB_MOUNT_ROOT", "AZ_BATCHAI_OUTPUT_MODEL",
                "AZ_BATCHAI_INPUT_DATA", "AZ_BATCHAI_JOB_TEMP", "AZ_BATCHAI_SHARED_JOB_TEMP",
                "AZ_BATCHAI_STDOUTERR_DIR", "AZ_BATCHAI_TASK_INDEX", "AZ_BATCHAI_NUM_GPUS"):
        assert f"\n{var}=" in stdout, var
    assert "MY_SETTING=plain-value" in stdout and "MY_SECRET=s3cr3t-value" in stdout
    assert "BATCHAI_STORAGE_CONNECTION_STRING" not in stdout  # the agent's storage key never reaches a job
    env = dict(re.findall(r"^(AZ_BATCHAI_\w+)=(.*)$", stdout, re.M))
    segment = job["jobOutputDirectoryPathSegment"]
    expected_out = (f"{agent.mount_root}/out/00000000-0000-0000-0000-000000000000/demo/workspaces/ws"
                    f"/experiments/exp/jobs/{a.job_arm_id.rsplit('/', 1)[1]}/{segment}/outputs")
    assert env["AZ_BATCHAI_OUTPUT_MODEL"] == expected_out
    assert env["AZ_BATCHAI_INPUT_DATA"] == env["AZ_BATCHAI_JOB_MOUNT_ROOT"] + "/data"
    assert env["AZ_BATCHAI_TASK_INDEX"] == "0" and env["AZ_BATCHAI_NUM_GPUS"] == "0"
    assert env["AZ_BATCHAI_STDOUTERR_DIR"].startswith(f"{agent.mount_root}/logs/")
    assert (blob_text(agent.conn, f"{a.output_prefix}/outputs/MODEL/m.txt") or "").strip() == "trained"
    assert "AZ_BATCHAI_TASK_INDEX=0" in Path(env["AZ_BATCHAI_STDOUTERR_DIR"], "stdout.txt").read_text()
    assert "s3cr3t-value" not in agent.log_text()


def test_exit_code_is_reported(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    a = assignment(agent, job_props("echo about to fail; exit 3"))
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id)
    assert exited["exit_code"] == 3
    assert "about to fail" in (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or "")


def test_unusable_output_directory_is_an_error_event(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    agent.mount_root.mkdir(parents=True, exist_ok=True)
    (agent.mount_root / "afile").write_text("not a directory")
    a = assignment(agent, job_props("echo never", stdOutErrPathPrefix="$AZ_BATCHAI_MOUNT_ROOT/afile"))
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id)
    assert exited["error"]["code"] == "TaskPreparationFailed", exited
    assert "exit_code" not in exited
    assert events.of(agent.node_id, "task-started", a.assignment_id) == []


def test_job_preparation_failure_is_reported_with_its_output(start_agent: Callable[..., AgentProc],
                                                             events: Events) -> None:
    agent = start_agent()
    a = assignment(agent, job_props("echo main-ran", jobPreparation={"commandLine": "echo prep-broke >&2; exit 2"}))
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id)
    assert exited["error"]["code"] == "JobPreparationFailed"
    assert "2" in exited["error"]["message"] and "prep-broke" in exited["error"]["message"]
    assert "prep-broke" in (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stderr-job_prep.txt") or "")
    assert "main-ran" not in (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or "")


def test_stdout_is_readable_while_the_task_runs(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    agent.mount_root.mkdir(parents=True, exist_ok=True)
    a = assignment(agent, job_props('echo tick 1; echo tick 2; while [ ! -e "$AZ_BATCHAI_MOUNT_ROOT/go" ]; '
                                    'do sleep 0.1; done; for i in $(seq 3 8); do echo tick $i; done'))
    agent.send(a)
    name = f"{a.output_prefix}/stdouterr/stdout.txt"
    text = wait_until(lambda: (t := blob_text(agent.conn, name)) and "tick 2" in t and t, 20, what="partial stdout")
    assert "tick 3" not in text  # the task waits for the go file: this is what it wrote while running
    assert events.of(agent.node_id, "task-exited", a.assignment_id) == []
    (agent.mount_root / "go").touch()
    events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=20)
    final = blob_text(agent.conn, name) or ""
    assert [f"tick {i}" for i in range(1, 9)] == final.split("\n")[:-1]  # every line once, in order


def _pgid_from_stdout(agent: AgentProc, prefix: str) -> int:
    def read() -> int | None:
        m = re.search(r"pgid (\d+)", blob_text(agent.conn, f"{prefix}/stdouterr/stdout.txt") or "")
        return int(m.group(1)) if m else None
    return wait_until(read, 20, what="the task's process group id")


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_ends_the_whole_process_group(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    # a child that ignores SIGTERM: the group must still be gone (SIGKILL after the grace)
    a = assignment(agent, job_props("echo pgid $$; (trap '' TERM; sleep 60) & sleep 60; wait"))
    agent.send(a)
    pgid = _pgid_from_stdout(agent, a.output_prefix)
    assert not _group_gone(pgid)
    agent.send(StopTask(a.assignment_id, "terminated", grace_seconds=1.0))
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=20)
    assert exited["stop_reason"] == "terminated"
    assert exited["exit_code"] in (143, 137)
    assert _group_gone(pgid)
    agent.send(StopTask(a.assignment_id, "terminated"))  # a stop for a finished assignment: its end again
    wait_until(lambda: len(events.of(agent.node_id, "task-exited", a.assignment_id)) == 2, 20,
               what="the end reported again")
    assert events.of(agent.node_id, "task-exited", a.assignment_id)[1] == exited
    agent.send(StopTask("never-seen-here", "terminated"))  # one it never had is ignored
    wait_until(agent.queue_empty, 20, what="the stop of an unknown assignment to be handled")
    assert events.of(agent.node_id, "task-exited", "never-seen-here") == []
    assert agent.process.poll() is None


def test_max_wall_clock_time_stops_the_task(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    a = assignment(agent, job_props("echo pgid $$; sleep 60", constraints={"maxWallClockTime": "PT2S"}))
    agent.send(a)
    events.wait(agent.node_id, "task-started", a.assignment_id)
    pgid = _pgid_from_stdout(agent, a.output_prefix)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=20)
    assert exited["stop_reason"] == "walltime"  # the agent's own decision that the limit passed
    assert exited["error"]["code"] == "JobWallClockTimeExceeded"
    assert _group_gone(pgid)


def test_the_same_assignment_delivered_twice_runs_once(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    agent.mount_root.mkdir(parents=True, exist_ok=True)
    a = assignment(agent, job_props('echo run >> "$AZ_BATCHAI_MOUNT_ROOT/runs.txt"; exit 4'))
    agent.send(a)
    agent.send(a)
    first = events.wait(agent.node_id, "task-exited", a.assignment_id)
    wait_until(agent.queue_empty, 20, what="both deliveries to be handled")
    assert len(events.of(agent.node_id, "task-exited", a.assignment_id)) == 1
    agent.send(a)  # again, after it finished: as the service asks when storage lost the first report
    wait_until(lambda: len(events.of(agent.node_id, "task-exited", a.assignment_id)) == 2, 20,
               what="the end reported again")
    assert (agent.mount_root / "runs.txt").read_text() == "run\n"
    again = events.of(agent.node_id, "task-exited", a.assignment_id)[1]
    assert again == first and again["exit_code"] == 4
    assert len(events.of(agent.node_id, "task-started", a.assignment_id)) + bool(first.get("started_at")) == 1


def test_a_container_job_never_runs_on_the_host(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent(env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    job = job_props('touch "$AZ_BATCHAI_MOUNT_ROOT/ran-on-host"',
                    containerSettings={"imageSourceRegistry": {"image": "localhost/no-such-image:1"}})
    a = assignment(agent, job)
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=60)
    assert exited["error"]["code"] == "ContainerEngineUnavailable", exited
    assert "unix:///nonexistent/docker.sock" in exited["error"]["message"]
    assert not (agent.mount_root / "ran-on-host").exists()


def test_a_task_with_nothing_to_run_serves_until_stopped(start_agent: Callable[..., AgentProc],
                                                         events: Events) -> None:
    agent = start_agent()
    a = assignment(agent, job_props("echo only-the-master-runs-this"), task_index=1)  # custom toolkit: task 0 runs
    agent.send(a)
    events.wait(agent.node_id, "task-started", a.assignment_id)
    agent.send(StopTask(a.assignment_id, "finished", grace_seconds=1.0))
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id)
    assert exited["exit_code"] == 0 and exited["stop_reason"] == "finished"
    assert "only-the-master" not in (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout-1.txt") or "")


def test_an_unreadable_message_goes_to_the_node_poison_queue(start_agent: Callable[..., AgentProc],
                                                             events: Events) -> None:
    agent = start_agent()
    events.wait(agent.node_id, "node-registered")
    storage.queue(agent.conn, storage.node_queue_name(agent.node_id)).send_message('{"kind": "dance"}')
    poison = storage.queue(agent.conn, storage.node_queue_name(agent.node_id) + "-poison")

    def rejected() -> list[str]:
        try:
            return [m.content for m in poison.peek_messages(max_messages=5)]
        except Exception:
            return []
    assert "dance" in wait_until(rejected, 20, what="the rejected message")[0]
    wait_until(agent.queue_empty, 10, what="the node queue to be empty")
    assert agent.process.poll() is None
