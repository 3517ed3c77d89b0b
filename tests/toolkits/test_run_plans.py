"""Task plans executed for real on this host: mpirun over a gang, PyTorch DDP, several processes per node."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

from shared.decisions.toolkits import plan_task
from shared.domain.messages import NodeAddress
from tests.polling import wait_until
from tests.toolkits.conftest import FIXTURES, start_plan, stdouterr_dir

LOCAL2 = [NodeAddress("node-a", "127.0.0.1"), NodeAddress("node-b", "127.0.0.1")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_files(directory: Path) -> dict[str, str]:
    """What each rank wrote to a file of its own (two ranks' lines in one pipe may interleave)."""
    return {p.name: p.read_text() for p in sorted(directory.glob("rank-*.txt"))}


def test_custom_mpi_runs_on_both_nodes_through_mpirun(run_plans, tmp_path: Path) -> None:
    ranks_dir = tmp_path / "ranks"
    ranks_dir.mkdir()
    job = {
        "nodeCount": 2,
        "customMpiSettings": {"commandLine": f'{{ echo "rank=$OMPI_COMM_WORLD_RANK host=$(hostname) var=$MY_VAR"; '
                                             f'env; }} > "{ranks_dir}/rank-$OMPI_COMM_WORLD_RANK.txt"'},
        "environmentVariables": [{"name": "MY_VAR", "value": "forwarded"}],
    }
    plans = [plan_task(job, i, LOCAL2) for i in range(2)]
    assert plans[1].command is None and not plans[1].required
    [(code, _out, err)] = run_plans(plans, extra_env={"MY_VAR": "forwarded", "AZ_BATCHAI_NUM_GPUS": "0"})
    assert code == 0, err
    host = socket.gethostname()
    written = _rank_files(ranks_dir)
    assert sorted(written) == ["rank-0.txt", "rank-1.txt"]
    for rank, text in enumerate(written.values()):
        lines = text.splitlines()
        assert lines[0] == f"rank={rank} host={host} var=forwarded"
        assert "AZ_BATCHAI_NUM_GPUS=0" in lines  # every rank got the AZ_BATCHAI_* environment
        assert f"AZ_BATCHAI_MPI_HOST_FILE={tmp_path}/node-0/mpi-hostfile" in lines
    assert (tmp_path / "node-0" / "mpi-hostfile").read_text() == "127.0.0.1 slots=2\n"


def test_horovod_script_gets_world_size_from_mpirun(run_plans, tmp_path: Path) -> None:
    script = tmp_path / "hvd.py"
    ranks_dir = tmp_path / "ranks"
    ranks_dir.mkdir()
    script.write_text(
        "import os, sys\n"
        "rank, size = os.environ['OMPI_COMM_WORLD_RANK'], os.environ['OMPI_COMM_WORLD_SIZE']\n"
        f"with open(f'{ranks_dir}/rank-{{rank}}.txt', 'w') as out:\n"
        "    print('rank', rank, 'of', size, sys.argv[1:], file=out)\n"
    )
    settings = {
        "pythonScriptFilePath": str(script),
        "pythonInterpreterPath": sys.executable,
        "commandLineArgs": "--x 1",
    }
    plans = [plan_task({"nodeCount": 2, "horovodSettings": settings}, i, LOCAL2) for i in range(2)]
    [(code, _out, err)] = run_plans(plans)
    assert code == 0, err
    assert _rank_files(ranks_dir) == {f"rank-{r}.txt": f"rank {r} of 2 ['--x', '1']\n" for r in range(2)}


def test_mpirun_exit_code_of_a_failing_rank_fails_the_task(run_plans) -> None:
    job = {"nodeCount": 2, "customMpiSettings": {"commandLine": "exit $((OMPI_COMM_WORLD_RANK + 3))"}}
    plans = [plan_task(job, i, LOCAL2) for i in range(2)]
    [(code, _out, _err)] = run_plans(plans)
    assert code != 0


def test_pytorch_ddp_gloo_two_nodes(run_plans) -> None:
    settings = {
        "pythonScriptFilePath": str(FIXTURES / "ddp_train.py"),
        "pythonInterpreterPath": sys.executable,
        "communicationBackend": "Gloo",
    }
    port = free_port()
    plans = [plan_task({"nodeCount": 2, "pyTorchSettings": settings}, i, LOCAL2, port=port) for i in range(2)]
    results = run_plans(plans, timeout=180)
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    assert results[0][1].strip() == "rank=0 world_size=2 local_rank=0 in_sync=True"
    assert results[1][1].strip() == "rank=1 world_size=2 local_rank=0 in_sync=True"


def test_pytorch_ddp_two_ranks_on_one_node(run_plans) -> None:
    settings = {
        "pythonScriptFilePath": str(FIXTURES / "ddp_train.py"),
        "pythonInterpreterPath": sys.executable,
        "processCount": 2,
    }
    node = [NodeAddress("only", "127.0.0.1")]
    plan = plan_task({"nodeCount": 1, "pyTorchSettings": settings}, 0, node, port=free_port())
    [(code, out, err)] = run_plans([plan], timeout=180)
    assert code == 0, err
    assert sorted(out.splitlines()) == [
        "rank=0 world_size=2 local_rank=0 in_sync=True",
        "rank=1 world_size=2 local_rank=1 in_sync=True",
    ]


def tf_job(worker_args: str = "") -> dict:
    return {
        "nodeCount": 2,
        "tensorFlowSettings": {
            "pythonScriptFilePath": str(FIXTURES / "tf_task.py"),
            "pythonInterpreterPath": sys.executable,
            "parameterServerCount": 1,
            "workerCount": 2,
            "masterCommandLineArgs": f"--master --task_index=$AZ_BATCHAI_TASK_INDEX {worker_args}",
            "workerCommandLineArgs": "--task_index=$AZ_BATCHAI_TASK_INDEX",
            "parameterServerCommandLineArgs": "--task_index=$AZ_BATCHAI_TASK_INDEX",
        },
    }


def output_of(job_temp: Path, rank: int, name: str) -> list[dict]:
    return [json.loads(line) for line in (stdouterr_dir(job_temp, rank) / name).read_text().splitlines()]


def test_tensorflow_node_runs_worker_and_ps_and_stops_ps_when_worker_ends(run_plans, tmp_path: Path) -> None:
    plans = [plan_task(tf_job("--await-ps"), i, LOCAL2, port=7000) for i in range(2)]
    results = run_plans(plans, timeout=60)
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    assert [out for _, out, _ in results] == ["", ""]  # each process writes its own files, as Batch AI named them
    assert sorted(p.name for p in stdouterr_dir(tmp_path, 0).iterdir()) == [
        "stderr-ps-0.txt", "stderr-wk-0.txt", "stdout-ps-0.txt", "stdout-wk-0.txt"]
    assert sorted(p.name for p in stdouterr_dir(tmp_path, 1).iterdir()) == ["stderr-wk-1.txt", "stdout-wk-1.txt"]
    hosts = {"ps_hosts": "127.0.0.1:7002", "worker_hosts": "127.0.0.1:7000,127.0.0.1:7001"}
    assert output_of(tmp_path, 0, "stdout-ps-0.txt") == [
        {"type": "ps", "index": 0, "task_index": "0", **hosts, "argv": ["--task_index=0"]}]
    assert output_of(tmp_path, 0, "stdout-wk-0.txt") == [{
        "type": "worker", "index": 0, "task_index": "0", **hosts, "argv": ["--master", "--task_index=0", "--await-ps"]}]
    assert output_of(tmp_path, 1, "stdout-wk-1.txt") == [
        {"type": "worker", "index": 1, "task_index": "1", **hosts, "argv": ["--task_index=1"]}]


def test_tensorflow_worker_exit_code_is_the_node_exit_code(run_plans) -> None:
    plan = plan_task(tf_job("--exit=3"), 0, LOCAL2, port=7100)
    [(code, _out, err)] = run_plans([plan], timeout=60)
    assert code == 3, err


def test_stopping_a_multi_process_node_stops_every_process(tmp_path: Path) -> None:
    plan = plan_task(tf_job("--block"), 0, LOCAL2, port=7200)
    proc = start_plan(plan, 0, tmp_path)
    outputs = [stdouterr_dir(tmp_path, 0) / name for name in ("stdout-wk-0.txt", "stdout-ps-0.txt")]
    wait_until(lambda: all(p.exists() and p.read_text().strip() for p in outputs), 30,
               what="both processes to print")  # both run
    os.kill(proc.pid, signal.SIGTERM)  # only the shell: it passes the signal on
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143
    # no process of the task is left in its session
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _session(p) == proc.pid]
    assert leftovers == []


def _session(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[4])
    except (OSError, IndexError, ValueError):
        return None
