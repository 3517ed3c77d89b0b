"""Each task's execution log (Batch AI's ``execution.log`` beside stdout.txt): what the node did, with UTC
times, streamed while the task runs, named per task like stdout, and without any secret value."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable
from datetime import datetime

from shared.config import AZURITE_ACCOUNT, AZURITE_KEY
from shared.domain.messages import NodeAddress, StopTask
from tests.agent.conftest import AgentProc, Events, assignment, blob_text, job_props, wait_until

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (.+)$")


def lines_of(text: str) -> list[tuple[datetime, str]]:
    parsed = []
    for line in text.splitlines():
        match = LINE.match(line)
        assert match, line
        parsed.append((datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%fZ"), match.group(2)))
    return parsed


def test_the_execution_log_tells_what_the_node_did_without_secrets(start_agent: Callable[..., AgentProc],
                                                                   events: Events) -> None:
    agent = start_agent()
    secret = f"s3cret-{uuid.uuid4().hex}"
    share_url = f"https://{AZURITE_ACCOUNT}.file.core.windows.net/xlog{uuid.uuid4().hex[:6]}"
    job = job_props(f'echo "using $MY_SECRET"; echo model > "$AZ_BATCHAI_OUTPUT_MODEL/m.txt"; echo {secret} >&2',
                    secrets=[{"name": "MY_SECRET", "value": secret}],
                    jobPreparation={"commandLine": "echo preparing"},
                    outputDirectories=[{"id": "MODEL", "pathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/afs"}],
                    mountVolumes={"azureFileShares": [{"accountName": AZURITE_ACCOUNT, "azureFileUrl": share_url,
                                                       "credentials": {"accountKey": AZURITE_KEY},
                                                       "relativeMountPath": "afs"}]})
    a = assignment(agent, job)
    agent.send(a)
    exited = events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=60)
    assert exited["exit_code"] == 0, exited
    text = blob_text(agent.conn, f"{a.output_prefix}/stdouterr/execution.log") or ""
    parsed = lines_of(text)
    assert [t for t, _ in parsed] == sorted(t for t, _ in parsed)
    messages = "\n".join(m for _, m in parsed)
    uid = re.search(r"job user: uid (\d+)", messages).group(1)  # type: ignore[union-attr]
    for expected in (f"task 0 of job {a.job_arm_id} (assignment {a.assignment_id}, attempt 1) on node {agent.node_id}",
                     f"job volume: azureFileShares {share_url} at afs", "secrets: 1",
                     "job preparation started (pid ", f", uid {uid})", "job preparation exited with code 0",
                     "command exited with code 0", "output MODEL: 1 file(s) uploaded", "mounts undone",
                     "task ended: exit code 0"):
        assert expected in messages, (expected, messages)
    assert re.search(rf"command started \(pid \d+, uid {uid}\)", messages), messages
    assert secret not in text and AZURITE_KEY not in text
    # The same log lies beside stdout.txt in the stdout/stderr directory.
    [copy] = (agent.mount_root / "logs").rglob("execution.log")
    assert copy.read_text() == text and (copy.parent / "stdout.txt").exists()


def test_the_log_streams_while_the_task_runs_and_each_task_has_its_own(start_agent: Callable[..., AgentProc],
                                                                        events: Events) -> None:
    master = start_agent()
    other = start_agent(cluster_key=master.cluster_key)
    gang = [NodeAddress(master.node_id, "127.0.0.1"), NodeAddress(other.node_id, "127.0.0.1")]
    first = dataclasses.replace(assignment(master, job_props("sleep 300", nodeCount=2)), nodes=gang)
    second = dataclasses.replace(first, task_index=1)
    master.send(first)
    other.send(second)
    name0, name1 = f"{first.output_prefix}/stdouterr/execution.log", f"{first.output_prefix}/stdouterr/execution-1.log"
    wait_until(lambda: "command started" in (blob_text(master.conn, name0) or ""), 30, what="the running log")
    wait_until(lambda: "serving the gang" in (blob_text(other.conn, name1) or ""), 30, what="task 1's log")
    assert "task ended" not in (blob_text(master.conn, name0) or "")
    master.send(StopTask(first.assignment_id, "finished", grace_seconds=1.0))
    other.send(StopTask(second.assignment_id, "finished", grace_seconds=1.0))
    events.wait(master.node_id, "task-exited", first.assignment_id)
    events.wait(other.node_id, "task-exited", second.assignment_id)
    assert "command stopped (finished)" in (blob_text(master.conn, name0) or "")
    assert "task ended: exit code 0, stopped (finished)" in (blob_text(other.conn, name1) or "")
    assert "command started" not in (blob_text(other.conn, name1) or "")


def test_a_task_that_cannot_start_still_has_its_log(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    a = assignment(agent, job_props("echo never", mountVolumes={"unmanagedFileSystems": [
        {"mountCommand": "mount -o pw=hunter2hunter2", "relativeMountPath": "u"}]}))
    agent.send(a)
    events.wait(agent.node_id, "task-exited", a.assignment_id)
    text = blob_text(agent.conn, f"{a.output_prefix}/stdouterr/execution.log") or ""
    assert "task ended: exit code None, error MountFailed: unmanagedFileSystems" in text, text
    assert "command started" not in text
