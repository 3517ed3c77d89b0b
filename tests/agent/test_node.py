"""The node agent as a node: setup and mounts, preemption, leaving, stopping."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters import local_paths, storage
from shared.domain.messages import Leave
from tests.agent.conftest import AgentProc, Events, assignment, blob_text, job_props, wait_until

SHARE_URL = "https://devstoreaccount1.file.core.windows.net/shared"


def _setup_prefix(agent: AgentProc) -> str:
    cluster = agent.cluster_key.split("|")[3]
    return storage.setup_output_prefix("ws", cluster, agent.node_id)


def test_setup_task_runs_with_a_mounted_file_share_visible_to_jobs(start_agent: Callable[..., AgentProc],
                                                                   events: Events) -> None:
    agent = start_agent()
    cluster = {"nodeSetup": {
        "mountVolumes": {"azureFileShares": [{"accountName": "devstoreaccount1", "azureFileUrl": SHARE_URL,
                                              "credentials": {"accountKey": "x"}, "relativeMountPath": "afs"}]},
        "setupTask": {"commandLine": 'echo setup-ok $GREETING; echo "$TOKEN" > "$AZ_BATCHAI_MOUNT_ROOT/afs/token"',
                      "environmentVariables": [{"name": "GREETING", "value": "hello"}],
                      "secrets": [{"name": "TOKEN", "value": "tok-123"}],
                      "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/afs/setup-logs"}}}
    agent.send_setup(cluster)
    events.wait(agent.node_id, "node-ready", timeout=30)
    share = local_paths.fileshare_dir(agent.state_dir, "devstoreaccount1", SHARE_URL)
    assert (share / "token").read_text() == "tok-123\n"
    assert "setup-ok hello" in (blob_text(agent.conn, f"{_setup_prefix(agent)}/stdout.txt") or "")
    on_share = list((share / "setup-logs").rglob("stdout.txt"))
    assert len(on_share) == 1 and "setup-ok hello" in on_share[0].read_text()
    assert agent.node_id in str(on_share[0])
    assert "tok-123" not in agent.log_text()

    command = 'cat "$AZ_BATCHAI_MOUNT_ROOT/afs/token"; echo from-job > "$AZ_BATCHAI_MOUNT_ROOT/afs/j"'
    a = assignment(agent, job_props(command), cluster=cluster)
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id)
    assert exited["exit_code"] == 0, exited
    assert "tok-123" in (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or "")
    assert (share / "j").read_text() == "from-job\n"

    agent.send_setup(cluster)  # a repeated setup gets the recorded answer without running again
    wait_until(lambda: len(events.of(agent.node_id, "node-ready")) == 2, 20, what="the repeated node-ready")
    assert (blob_text(agent.conn, f"{_setup_prefix(agent)}/stdout.txt") or "").count("setup-ok") == 1


def test_failing_setup_task_makes_the_node_unusable(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    agent.send_setup({"nodeSetup": {"setupTask": {"commandLine": "echo cannot-install >&2; exit 4",
                                                  "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs"}}})
    unusable = events.wait(agent.node_id, "node-unusable", timeout=30)
    assert unusable["error"]["code"] == "SetupTaskFailed"
    assert "4" in unusable["error"]["message"] and "cannot-install" in unusable["error"]["message"]
    assert events.of(agent.node_id, "node-ready") == []


def test_node_without_setup_task_is_ready_after_mounting(start_agent: Callable[..., AgentProc],
                                                         events: Events) -> None:
    agent = start_agent()
    fileserver = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/ws/fileServers/nfs")
    agent.send_setup({"nodeSetup": {"mountVolumes": {
        "fileServers": [{"fileServer": {"id": fileserver}, "sourceDirectory": "data", "relativeMountPath": "nfs"}],
        "unmanagedFileSystems": [{"mountCommand": "mkdir -p", "relativeMountPath": "custom/sub"}]}}})
    events.wait(agent.node_id, "node-ready", timeout=30)
    assert (agent.mount_root / "nfs").resolve() == (local_paths.fileserver_dir(agent.state_dir, fileserver) / "data")
    assert (agent.mount_root / "custom" / "sub").is_dir()


def test_blob_container_mount_is_downloaded_and_changes_uploaded(start_agent: Callable[..., AgentProc],
                                                                 events: Events) -> None:
    agent = start_agent()
    container = storage.blob_service(agent.conn).get_container_client("mounted-data")
    if not container.exists():
        container.create_container()
    container.upload_blob("in/data.txt", b"input-bytes", overwrite=True)
    job = job_props('cat "$AZ_BATCHAI_JOB_MOUNT_ROOT/blob/in/data.txt"; '
                    'echo made > "$AZ_BATCHAI_JOB_MOUNT_ROOT/blob/new.txt"',
                    mountVolumes={"azureBlobFileSystems": [{"accountName": "devstoreaccount1",
                                                            "containerName": "mounted-data",
                                                            "credentials": {"accountKey": "x"},
                                                            "relativeMountPath": "blob"}]})
    a = assignment(agent, job)
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id)
    assert exited["exit_code"] == 0, exited
    assert "input-bytes" in (blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or "")
    assert container.download_blob("new.txt").readall() == b"made\n"


def _running_task(agent: AgentProc, events: Events) -> str:
    a = assignment(agent, job_props("sleep 60"))
    agent.send(a)
    events.wait(agent.node_id, "task-started", a.assignment_id)
    return a.assignment_id


def test_preemption_signal_stops_the_task_and_reports(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    assignment_id = _running_task(agent, events)
    os.kill(agent.process.pid, signal.SIGUSR1)
    exited = events.wait(agent.node_id, "task-exited", assignment_id, timeout=30)
    assert exited["stop_reason"] == "preempted"
    events.wait(agent.node_id, "node-preempted", timeout=30)
    late = assignment(agent, job_props("echo should-not-run"))
    agent.send(late)  # after the notice, new work is handed back at once
    assert events.wait(agent.node_id, "task-exited", late.assignment_id)["stop_reason"] == "preempted"
    assert events.of(agent.node_id, "task-started", late.assignment_id) == []


def test_preempt_file_is_a_preemption_notice(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    assignment_id = _running_task(agent, events)
    (agent.workdir / "preempt").touch()
    assert events.wait(agent.node_id, "task-exited", assignment_id, timeout=30)["stop_reason"] == "preempted"
    events.wait(agent.node_id, "node-preempted", timeout=30)


def test_leave_stops_the_task_deletes_the_queue_and_exits(start_agent: Callable[..., AgentProc],
                                                          events: Events) -> None:
    agent = start_agent()
    assignment_id = _running_task(agent, events)
    agent.send(Leave("node removed"))
    assert agent.process.wait(30) == 0
    assert events.wait(agent.node_id, "task-exited", assignment_id)["stop_reason"] == "node-removed"
    queue = storage.queue(agent.conn, storage.node_queue_name(agent.node_id))
    try:
        queue.get_queue_properties()
        raise AssertionError("the node queue still exists")
    except ResourceNotFoundError:
        pass


def test_sigterm_stops_the_task_gracefully(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    assignment_id = _running_task(agent, events)
    agent.process.send_signal(signal.SIGTERM)
    assert agent.process.wait(30) == 0
    assert events.wait(agent.node_id, "task-exited", assignment_id)["stop_reason"] == "agent-stopped"
