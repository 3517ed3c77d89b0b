"""Each job runs as its own user: it cannot read another job's environment or files, the node's token or
the agent's environment; it gets an allow-listed environment, not the agent's; what it leaves running
ends with it. Real agent processes (run as root, as on a machine), and the uid pool on its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.agent.job_users import FIRST_UID, POOL_SIZE, UserPool
from shared.agent.sandbox import view_for
from shared.config import AZURITE_ACCOUNT, AZURITE_KEY
from shared.domain.messages import AssignedTask, StopTask
from shared.domain.metrics import task_pythonpath
from tests.agent.conftest import AgentProc, Events, assignment, blob_text, job_props, wait_until


def stdout(agent: AgentProc, a: AssignedTask) -> str:
    return blob_text(agent.conn, f"{a.output_prefix}/stdouterr/stdout.txt") or ""


def run(agent: AgentProc, events: Events, job: dict[str, Any]) -> tuple[AssignedTask, dict[str, Any]]:
    a = assignment(agent, job)
    agent.send(a)
    return a, events.wait(agent.node_id, "task-exited", a.assignment_id, timeout=60)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_job_runs_as_its_own_user_and_owns_its_directories(start_agent: Callable[..., AgentProc],
                                                              events: Events) -> None:
    agent = start_agent()
    command = ('echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; for d in "$AZ_BATCHAI_JOB_TEMP" "$HOME" '
               '"$AZ_BATCHAI_STDOUTERR_DIR" "$AZ_BATCHAI_OUTPUT_OUT" "$PWD"; do echo "owner=$(stat -c %u "$d")"; done')
    a, exited = run(agent, events, job_props(command, outputDirectories=[{"id": "OUT"}]))
    assert exited["exit_code"] == 0, exited
    out = stdout(agent, a)
    uid, gid, groups = map(int, re.search(r"uid=(\d+) gid=(\d+) groups=(\d+)\n", out).groups())  # type: ignore[union-attr]
    assert FIRST_UID <= uid < FIRST_UID + POOL_SIZE and gid == uid and groups == gid
    assert re.findall(r"owner=(\d+)", out) == [str(uid)] * 5


def test_a_job_cannot_read_another_jobs_environment_or_files(start_agent: Callable[..., AgentProc],
                                                             events: Events) -> None:
    agent = start_agent()
    secret = f"secret-of-a-{uuid.uuid4().hex}"
    first = assignment(agent, job_props(f'echo "pid=$$ wd=$PWD"; echo {secret} > private.txt; '
                                        'chmod 644 private.txt; exec sleep 300',
                                        secrets=[{"name": "A_SECRET", "value": secret}]))
    agent.send(first)
    seen = wait_until(lambda: re.search(r"pid=(\d+) wd=(\S+)", stdout(agent, first)), 30, what="the first job")
    pid, wd = seen.groups()  # type: ignore[union-attr]
    probe = (f'tr "\\0" "\\n" < /proc/{pid}/environ; echo "environ=$?"; cat {wd}/private.txt; echo "file=$?"; '
             f'kill -0 {pid}; echo "signal=$?"')
    second, exited = run(agent, events, job_props(probe))
    assert exited["exit_code"] == 0, exited
    out = stdout(agent, second)
    assert secret not in out
    assert "environ=1" in out and "file=1" in out and "signal=1" in out, out
    agent.send(StopTask(first.assignment_id, "test over", grace_seconds=1.0))
    events.wait(agent.node_id, "task-exited", first.assignment_id)


def test_a_job_cannot_read_the_node_token_or_the_agents_environment(start_agent: Callable[..., AgentProc],
                                                                    events: Events) -> None:
    agent = start_agent(env={"AGENT_ONLY_SETTING": "not-for-jobs"})
    command = (f'cat {agent.workdir}/node-token; echo "token=$?"; '
               f'tr "\\0" "\\n" < /proc/{agent.process.pid}/environ; echo "environ=$?"')
    a, exited = run(agent, events, job_props(command))
    assert exited["exit_code"] == 0, exited
    out = stdout(agent, a)
    token = (agent.workdir / "node-token").read_text().strip()
    assert token not in out and "BATCHAI_STORAGE_CONNECTION_STRING" not in out and "not-for-jobs" not in out
    assert "token=1" in out and "environ=1" in out, out


def test_a_job_gets_an_allow_listed_environment(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent(env={"AGENT_ONLY_SETTING": "not-for-jobs", "LC_TIME": "C.UTF-8"})
    job = job_props("env", environmentVariables=[{"name": "MINE", "value": "yes"}],
                    secrets=[{"name": "MY_SECRET", "value": "s3cret-value"}])
    a, exited = run(agent, events, job)
    assert exited["exit_code"] == 0, exited
    env = dict(line.split("=", 1) for line in stdout(agent, a).splitlines() if "=" in line)
    assert "AGENT_ONLY_SETTING" not in env and not any(k.startswith("BATCHAI_") for k in env)
    assert env["MINE"] == "yes" and env["MY_SECRET"] == "s3cret-value" and env["LC_TIME"] == "C.UTF-8"
    assert env["PATH"] == os.environ["PATH"]
    assert env["HOME"].endswith("/home") and env["TMPDIR"] == env["AZ_BATCHAI_JOB_TEMP"]
    assert env["PYTHONPATH"] == task_pythonpath(None)  # batchai_metrics only, not the agent's own path
    extra = set(env) - {"MINE", "MY_SECRET", "PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "PWD", "SHLVL", "_",
                        "PYTHONPATH"}
    assert {k for k in extra if not k.startswith(("AZ_BATCHAI_", "LC_", "LANG", "TERM", "TZ", "SSL_CERT"))} == set()


def test_what_a_job_leaves_running_ends_with_it(start_agent: Callable[..., AgentProc], events: Events) -> None:
    agent = start_agent()
    a, exited = run(agent, events, job_props('setsid sleep 300 < /dev/null > /dev/null 2>&1 & echo "daemon=$!"'))
    assert exited["exit_code"] == 0, exited
    pid = int(re.search(r"daemon=(\d+)", stdout(agent, a)).group(1))  # type: ignore[union-attr]
    try:
        wait_until(lambda: not pid_alive(pid), 30, what="the job's daemon to end with it")
        log = blob_text(agent.conn, f"{a.output_prefix}/stdouterr/execution.log") or ""
        assert "1 process(es) the job left running were ended" in log, log
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# --- the pool and the view, on their own --------------------------------------------------------

def test_the_pool_gives_each_assignment_its_own_uid_and_shares_it_within_one(tmp_path: Path) -> None:
    pool = UserPool(tmp_path / "pool", first=FIRST_UID + POOL_SIZE - 50, size=3)
    a1, b1 = pool.claim("a"), pool.claim("b")
    a2 = pool.claim("a")  # another task of assignment a on this host (a gang node of the same machine)
    assert a1.user == a2.user and a1.user.uid != b1.user.uid and a1.user.name != b1.user.name
    c1 = pool.claim("c")
    with pytest.raises(RuntimeError):
        pool.claim("d")  # three in use
    a1.release()
    with pytest.raises(RuntimeError):
        pool.claim("d")  # a2 still holds a's uid
    a2.release()
    assert pool.claim("d").user.uid == a1.user.uid
    b1.release()
    c1.release()


def test_the_pool_skips_a_uid_a_leftover_process_still_runs_as(tmp_path: Path) -> None:
    uid = FIRST_UID + POOL_SIZE - 10
    leftover = subprocess.Popen(["sleep", "300"], user=uid, group=uid, extra_groups=[])
    try:
        pool = UserPool(tmp_path / "pool", first=uid, size=2)
        assert pool.claim("x").user.uid == uid + 1
    finally:
        leftover.kill()
        leftover.wait()


def test_a_claim_of_an_agent_that_died_is_free_again(tmp_path: Path) -> None:
    pool_dir = tmp_path / "pool"
    script = ("import sys; from shared.agent.job_users import UserPool; "
              f"c = UserPool(__import__('pathlib').Path({str(pool_dir)!r}), first={FIRST_UID + POOL_SIZE - 20}, size=1)"
              ".claim('gone'); print(c.user.uid, flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == str(FIRST_UID + POOL_SIZE - 20)
    pool = UserPool(pool_dir, first=FIRST_UID + POOL_SIZE - 20, size=1)
    with pytest.raises(RuntimeError):
        pool.claim("other")
    holder.kill()
    holder.wait()
    assert pool.claim("other").user.uid == FIRST_UID + POOL_SIZE - 20


def test_the_view_names_the_entries_of_root_only_directories_on_the_way(tmp_path: Path) -> None:
    private = tmp_path / "private"
    (private / "shown" / "deeper").mkdir(parents=True)
    (private / "hidden").mkdir()
    private.chmod(0o700)
    tmp_path.chmod(0o755)
    view = view_for([private / "shown" / "deeper"], FIRST_UID, FIRST_UID)
    assert (str(private), ("shown",)) in view
    assert all(directory != str(private / "shown") for directory, _ in view)


def test_in_the_state_directory_a_job_sees_only_what_it_was_given(start_agent: Callable[..., AgentProc],
                                                                 events: Events) -> None:
    agent = start_agent()
    account_dir = agent.state_dir / "fileshares" / AZURITE_ACCOUNT.lower()
    (account_dir / "others").mkdir(parents=True, exist_ok=True)
    (account_dir / "others" / "data.txt").write_text("another workspace's data\n")
    name = f"mine{uuid.uuid4().hex[:6]}"
    share = {"accountName": AZURITE_ACCOUNT, "azureFileUrl": f"https://{AZURITE_ACCOUNT}.file.core.windows.net/{name}",
             "credentials": {"accountKey": AZURITE_KEY}, "relativeMountPath": "afs"}
    command = (f'ls {account_dir}; ls {agent.state_dir}; cat {account_dir}/others/data.txt; echo "rc=$?"; '
               'echo mine > "$AZ_BATCHAI_JOB_MOUNT_ROOT/afs/written.txt"')
    a, exited = run(agent, events, job_props(command, mountVolumes={"azureFileShares": [share]}))
    assert exited["exit_code"] == 0, exited
    out = stdout(agent, a)
    assert out.splitlines()[0] == name and "another workspace's data" not in out and "rc=1" in out, out
    assert (account_dir / name / "written.txt").read_text() == "mine\n"


def test_a_hidden_root_shows_only_the_entries_on_the_way(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for name in ("nodes/n1/jobs/a", "nodes/n2", "fileshares/acct/s1", "fileshares/acct/s2", "azurite"):
        (state / name).mkdir(parents=True)
    view = dict(view_for([state / "nodes/n1/jobs/a", state / "fileshares/acct/s1"], FIRST_UID, FIRST_UID,
                         hidden=[state]))
    assert view[str(state)] == ("fileshares", "nodes")
    assert view[str(state / "nodes")] == ("n1",) and view[str(state / "nodes/n1/jobs")] == ("a",)
    assert view[str(state / "fileshares/acct")] == ("s1",)
