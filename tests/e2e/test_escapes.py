"""Jobs cannot escape their node sandbox, on both topologies: a job that tries every escape from inside
(another job's environment, the node's token and the agent's environment, IMDS and the node API, links
in its outputs and in place of its stderr) gets nothing of them and its own work succeeds; a job whose
mounts name host paths does not start; every job's stdouterr lists its execution log."""

from __future__ import annotations

import json
import uuid

from azure.mgmt.batchai import models

from tests.e2e.conftest import EXP, MACHINES, PROCESSES, WS, Stack, wait_until

ESCAPES = r'''
import glob, json, os, pathlib, ssl, sys, urllib.request

other_secret = sys.argv[1].encode()
report = {}


def attempt(name, action):
    try:
        report[name] = "got: " + str(action())[:300]
    except Exception as error:  # every escape is expected to fail: how it failed is the report
        report[name] = f"refused: {type(error).__name__}: {error}"[:300]


# The node's credential: its token file (process nodes) beside the mount root.
workdir = os.path.dirname(os.environ["AZ_BATCHAI_MOUNT_ROOT"])
attempt("node token", lambda: pathlib.Path(workdir, "node-token").read_text())
# The environment of every process but the job's own: other jobs' secrets, the agent's settings.
leaks = []
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        if os.stat(os.path.dirname(path)).st_uid == os.getuid():
            continue
        data = pathlib.Path(path).read_bytes()
    except OSError:
        continue
    if other_secret in data or b"AccountKey=" in data or b"BATCHAI_STORAGE_CONNECTION_STRING" in data:
        leaks.append(path)
report["other environments"] = leaks
# The node's identity on a machine: IMDS, and the node API it would give a token to.
config_file = pathlib.Path("/etc/batchai/agent.json")
if config_file.exists():
    config = json.loads(config_file.read_text())
    attempt("imds token", lambda: urllib.request.urlopen(urllib.request.Request(
        f"{config['imdsUrl']}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={config['tokenResource']}",
        headers={"Metadata": "true"}), timeout=10).read())
    attempt("node credentials", lambda: urllib.request.urlopen(urllib.request.Request(
        f"{config['serviceUrl']}/nodeagent/credentials", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"clusterKey": config["clusterKey"], "nodeId": os.uname().nodename}).encode()),
        timeout=10, context=ssl._create_unverified_context()).read())
# Links the agent would follow when it uploads: in the outputs, and in place of stderr.
out = pathlib.Path(os.environ["AZ_BATCHAI_OUTPUT_OUT"])
(out / "own.txt").write_text("the job's own work\n")
(out / "shadow").symlink_to("/etc/shadow")
(out / "etc").symlink_to("/etc")
stderr = pathlib.Path(os.environ["AZ_BATCHAI_STDOUTERR_DIR"], "stderr.txt")
stderr.unlink()
stderr.symlink_to("/etc/shadow")
print(json.dumps(report))
'''


def stdout_of(s: Stack, job: str, name: str = "stdout.txt") -> str:
    files = s.output_files(WS, EXP, job)
    return s.download(files[name].download_url) if name in files else ""


def test_a_job_trying_every_escape_gets_nothing_and_its_own_work_succeeds(two_nodes: Stack) -> None:
    s = two_nodes
    here, there = s.scratch("escapes")
    (here / "escapes.py").write_text(ESCAPES)
    other_secret = f"other-job-secret-{uuid.uuid4().hex}"
    holder, prober = f"holder-{uuid.uuid4().hex[:6]}", f"prober-{uuid.uuid4().hex[:6]}"
    s.submit(WS, EXP, holder, "two", 'echo "holding"; sleep 600',
             secrets=[models.EnvironmentVariableWithSecretValue(name="HELD", value=other_secret)])
    wait_until(lambda: "holding" in stdout_of(s, holder), 300, what="the other job to run")
    try:
        s.submit(WS, EXP, prober, "two", f"{s.python} {there}/escapes.py {other_secret}",
                 output_directories=[models.OutputDirectory(id="OUT", path_prefix="$AZ_BATCHAI_MOUNT_ROOT/out")])
        job = s.wait_job(WS, EXP, prober, timeout=900)
    finally:
        s.client.jobs.begin_terminate(s.rg, WS, EXP, holder).result()
    assert job.execution_state == "succeeded", job.execution_info
    report = json.loads(stdout_of(s, prober).strip().splitlines()[-1])
    assert report["node token"].startswith(("refused: PermissionError", "refused: FileNotFoundError")), report
    assert report["other environments"] == [], report
    if s.topology == MACHINES:
        for name in ("imds token", "node credentials"):
            assert report[name].startswith("refused: URLError") and "Connection refused" in report[name], report
    files = s.output_files(WS, EXP, prober, directory_id="OUT")
    assert sorted(files) == ["own.txt"]
    assert s.download(files["own.txt"].download_url) == "the job's own work\n"
    assert "root:" not in stdout_of(s, prober, "stderr.txt")
    log = stdout_of(s, prober, "execution.log")
    assert "job user: uid " in log and "task ended: exit code 0" in log, log
    assert other_secret not in log
    if s.topology == PROCESSES:
        assert "network: no rules on this node" in log, log
    else:
        assert "network: the job's traffic to " in log, log


def test_a_job_mounting_host_paths_does_not_start(two_nodes: Stack) -> None:
    s = two_nodes
    name = f"hostpath-{uuid.uuid4().hex[:6]}"
    share = models.AzureFileShareReference(account_name="/", relative_mount_path="afs",
                                           azure_file_url=f"https://{s.account}.file.core.windows.net/etc",
                                           credentials=models.AzureStorageCredentialsInfo(account_key=s.account_key))
    s.submit(WS, EXP, name, "two", 'cat "$AZ_BATCHAI_JOB_MOUNT_ROOT/afs/passwd"',
             mount_volumes=models.MountVolumes(azure_file_shares=[share]))
    job = s.wait_job(WS, EXP, name)
    assert "root:" not in stdout_of(s, name)
    if s.topology == PROCESSES:  # the account name makes the share's directory on this host
        assert job.execution_state == "failed"
        assert [e.code for e in job.execution_info.errors or []][:1] == ["MountFailed"], job.execution_info
    # On a machine the share comes from its URL: "/" is only the name its credentials carry.
    climbing = f"climbing-{uuid.uuid4().hex[:6]}"
    s.submit(WS, EXP, climbing, "two", "echo never", output_directories=[models.OutputDirectory(
        id="OUT", path_prefix="$AZ_BATCHAI_MOUNT_ROOT/out", path_suffix="../../../../../../../../../etc")])
    job = s.wait_job(WS, EXP, climbing)
    assert job.execution_state == "failed"
    assert "InvalidPath" in [e.code for e in job.execution_info.errors or []], job.execution_info
    assert "execution.log" in s.output_files(WS, EXP, climbing)  # what the node did, even for a refused job


def test_every_job_lists_its_execution_log_beside_stdout(two_nodes: Stack) -> None:
    s = two_nodes
    name = f"xlog-{uuid.uuid4().hex[:6]}"
    s.submit(WS, EXP, name, "two", "echo hello")
    assert s.wait_job(WS, EXP, name).execution_state == "succeeded"
    files = s.output_files(WS, EXP, name)
    assert {"stdout.txt", "stderr.txt", "execution.log"} <= set(files), sorted(files)
    log = s.download(files["execution.log"].download_url)
    assert "command started (pid " in log and "command exited with code 0" in log and "task ended" in log, log
    assert files["execution.log"].content_length == len(log.encode())
