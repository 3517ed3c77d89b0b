"""Table tests of plan_task: the command line and environment of every toolkit, per node of a gang."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.decisions.toolkits import TaskPlan, gang_port, plan_task
from shared.domain.messages import NodeAddress

N3 = [NodeAddress("n0", "10.0.0.4"), NodeAddress("n1", "10.0.0.5"), NodeAddress("n2", "10.0.0.6")]
N2 = N3[:2]
N1 = N3[:1]


def job(toolkit: str, settings: dict[str, Any], node_count: int, **extra: Any) -> dict[str, Any]:
    return {"nodeCount": node_count, toolkit: settings, **extra}


def plans(j: dict[str, Any], nodes: list[NodeAddress], port: int = 29500) -> list[TaskPlan]:
    return [plan_task(j, i, nodes, port=port) for i in range(len(nodes))]


# (toolkit, settings, gang size, expected command on the master)
SINGLE_NODE = [
    ("customToolkitSettings", {"commandLine": "echo hi"}, "echo hi"),
    (
        "pyTorchSettings",
        {"pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/t.py", "commandLineArgs": "--epochs 1"},
        "python $AZ_BATCHAI_JOB_MOUNT_ROOT/t.py --epochs 1",
    ),
    (
        "tensorFlowSettings",
        {"pythonScriptFilePath": "s.py", "pythonInterpreterPath": "python3", "masterCommandLineArgs": "--m"},
        "python3 s.py --m",
    ),
    ("chainerSettings", {"pythonScriptFilePath": "c.py", "commandLineArgs": "-g"}, "python c.py -g"),
    (
        "cntkSettings",
        {"languageType": "BrainScript", "configFilePath": "$AZ_BATCHAI_INPUT_CONFIG/a.cntk", "commandLineArgs": "x=1"},
        "cntk configFile=$AZ_BATCHAI_INPUT_CONFIG/a.cntk x=1",
    ),
    ("cntkSettings", {"configFilePath": "a.cntk"}, "cntk configFile=a.cntk"),  # BrainScript inferred
    ("cntkSettings", {"pythonScriptFilePath": "k.py"}, "python k.py"),  # Python inferred (Keras recipe)
    (
        "caffeSettings",
        {"configFilePath": "solver.prototxt", "commandLineArgs": "--gpu=0"},
        "caffe train --solver=solver.prototxt --gpu=0",
    ),
    (
        "caffeSettings",
        {"configFilePath": "solver.prototxt"},
        'caffe train --solver=solver.prototxt $([ "${AZ_BATCHAI_NUM_GPUS:-0}" -gt 0 ] && echo --gpu=all)',
    ),
    ("caffeSettings", {"pythonScriptFilePath": "p.py", "pythonInterpreterPath": "/opt/py"}, "/opt/py p.py"),
    ("caffe2Settings", {"pythonScriptFilePath": "r.py", "commandLineArgs": "--a 1"}, "python r.py --a 1"),
]


@pytest.mark.parametrize(("toolkit", "settings", "command"), SINGLE_NODE)
def test_single_node_command(toolkit: str, settings: dict[str, Any], command: str) -> None:
    plan = plan_task(job(toolkit, settings, 1), 0, N1)
    assert plan.command == command
    assert plan.required


@pytest.mark.parametrize(
    ("toolkit", "settings"),
    [
        ("customToolkitSettings", {"commandLine": "echo hi"}),
        ("chainerSettings", {"pythonScriptFilePath": "c.py", "processCount": 1}),
        ("cntkSettings", {"pythonScriptFilePath": "c.py", "processCount": 1}),
        ("pyTorchSettings", {"pythonScriptFilePath": "t.py", "processCount": 1}),
    ],
)
def test_master_only_toolkits_leave_other_nodes_serving(toolkit: str, settings: dict[str, Any]) -> None:
    master, *others = plans(job(toolkit, settings, 3), N3)
    assert master.command and master.required
    for plan in others:
        assert plan.command is None
        assert not plan.required


def test_custom_toolkit_writes_host_file_when_its_command_uses_it() -> None:
    line = "mpirun --allow-run-as-root --hostfile $AZ_BATCHAI_MPI_HOST_FILE python s.py"
    plan = plan_task(job("customToolkitSettings", {"commandLine": line}, 2), 0, N2)
    assert plan.command is not None
    assert plan.command.endswith(line)
    assert "'10.0.0.4 slots=1' '10.0.0.5 slots=1'" in plan.command
    assert 'export AZ_BATCHAI_MPI_HOST_FILE="${AZ_BATCHAI_JOB_TEMP:-${TMPDIR:-/tmp}}/mpi-hostfile"' in plan.command


def test_tensorflow_one_ps_two_workers_on_three_nodes() -> None:
    settings = {
        "pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/mnist_replica.py",
        "parameterServerCount": 1,
        "workerCount": 2,
        "masterCommandLineArgs": "--job_name=worker --task_index=$AZ_BATCHAI_TASK_INDEX --master",
        "workerCommandLineArgs": "--job_name=worker --task_index=$AZ_BATCHAI_TASK_INDEX",
        "parameterServerCommandLineArgs": "--job_name=ps --task_index=$AZ_BATCHAI_TASK_INDEX",
    }
    p0, p1, p2 = plans(job("tensorFlowSettings", settings, 3), N3, port=2222)
    cluster = {"ps": ["10.0.0.6:2224"], "worker": ["10.0.0.4:2222", "10.0.0.5:2223"]}
    expected = [
        (p0, "worker", 0, "--job_name=worker --task_index=$AZ_BATCHAI_TASK_INDEX --master", True),
        (p1, "worker", 1, "--job_name=worker --task_index=$AZ_BATCHAI_TASK_INDEX", True),
        (p2, "ps", 0, "--job_name=ps --task_index=$AZ_BATCHAI_TASK_INDEX", False),
    ]
    for plan, kind, index, args, required in expected:
        [process] = plan.processes
        assert process.command == f"python $AZ_BATCHAI_JOB_MOUNT_ROOT/mnist_replica.py {args}"
        infix = f"{'wk' if kind == 'worker' else 'ps'}-{index}"
        assert process.output_files() == [f"stdout-{infix}.txt", f"stderr-{infix}.txt"]  # Batch AI's names
        assert f'{process.command}) >>"$AZ_BATCHAI_STDOUTERR_DIR/stdout-{infix}.txt"' in plan.command
        assert plan.required is required
        assert plan.env["AZ_BATCHAI_PS_HOSTS"] == "10.0.0.6:2224"
        assert plan.env["AZ_BATCHAI_WORKER_HOSTS"] == "10.0.0.4:2222,10.0.0.5:2223"
        assert f"export AZ_BATCHAI_TASK_INDEX={index};" in plan.command
        assert json.loads(plan.env["TF_CONFIG"]) == {
            "cluster": cluster,
            "task": {"type": kind, "index": index},
            "environment": "cloud",
        }


def test_tensorflow_recipe_two_nodes_puts_ps_beside_the_master() -> None:
    """1 ps + 2 workers on 2 nodes (the TensorFlow-GPU-Distributed recipe): node 0 runs worker 0 and ps 0."""
    settings = {"pythonScriptFilePath": "s.py", "parameterServerCount": 1, "workerCount": 2}
    p0, p1 = plans(job("tensorFlowSettings", settings, 2), N2, port=3000)
    assert [(p.role, p.index, p.required) for p in p0.processes] == [("master", 0, True), ("ps", 0, False)]
    assert [(p.role, p.index) for p in p1.processes] == [("worker", 1)]
    assert p0.required and p1.required
    assert p0.env["AZ_BATCHAI_PS_HOSTS"] == "10.0.0.4:3002"
    assert "AZ_BATCHAI_TASK_INDEX" not in p0.env  # exported per process inside the command
    assert p0.command is not None
    assert p0.command.count("exec python s.py") == 2
    assert "export AZ_BATCHAI_TASK_INDEX=0 TF_CONFIG=" in p0.command
    ps_config = json.loads(p0.processes[1].env["TF_CONFIG"])
    assert ps_config["task"] == {"type": "ps", "index": 0}


def test_tensorflow_defaults_to_one_ps_and_a_worker_per_node() -> None:
    p0, p1 = plans(job("tensorFlowSettings", {"pythonScriptFilePath": "s.py"}, 2), N2, port=4000)
    assert p0.env["AZ_BATCHAI_WORKER_HOSTS"] == "10.0.0.4:4000,10.0.0.5:4001"
    assert p0.processes[-1].env["AZ_BATCHAI_PS_HOSTS"] == "10.0.0.4:4002"


def test_tensorflow_hosts_are_distinct_when_every_node_is_localhost() -> None:
    local = [NodeAddress(f"n{i}", "127.0.0.1") for i in range(3)]
    settings = {"pythonScriptFilePath": "s.py", "parameterServerCount": 1, "workerCount": 2}
    plan = plan_task(job("tensorFlowSettings", settings, 3), 0, local, port=5000)
    hosts = plan.env["AZ_BATCHAI_WORKER_HOSTS"].split(",") + plan.env["AZ_BATCHAI_PS_HOSTS"].split(",")
    assert len(set(hosts)) == 3


def test_pytorch_two_nodes_env() -> None:
    settings = {
        "pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/scripts/pytorch/mnist_trainer.py",
        "commandLineArgs": "--dist-url $AZ_BATCHAI_PYTORCH_INIT_METHOD --rank $AZ_BATCHAI_TASK_INDEX",
        "communicationBackend": "Gloo",
    }
    port = gang_port("ws/exp/job")
    p0, p1 = plans(job("pyTorchSettings", settings, 2), N2, port=port)
    for rank, plan in enumerate((p0, p1)):
        assert plan.command == (
            "python $AZ_BATCHAI_JOB_MOUNT_ROOT/scripts/pytorch/mnist_trainer.py"
            " --dist-url $AZ_BATCHAI_PYTORCH_INIT_METHOD --rank $AZ_BATCHAI_TASK_INDEX"
        )
        assert plan.required
        assert plan.env == {
            "MASTER_ADDR": "10.0.0.4",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": "0",
            "LOCAL_WORLD_SIZE": "1",
            "NODE_RANK": str(rank),
            "AZ_BATCHAI_TASK_INDEX": str(rank),
            "AZ_BATCHAI_PYTORCH_BACKEND": "gloo",
            "AZ_BATCHAI_PYTORCH_INIT_METHOD": f"tcp://10.0.0.4:{port}",
        }


def test_pytorch_more_processes_than_nodes_spreads_ranks_in_node_order() -> None:
    settings = {"pythonScriptFilePath": "t.py", "processCount": 5, "communicationBackend": "nccl"}
    p0, p1 = plans(job("pyTorchSettings", settings, 2), N2)
    assert [(p.index, p.env["LOCAL_RANK"]) for p in p0.processes] == [(0, "0"), (1, "1"), (2, "2")]
    assert [(p.index, p.env["LOCAL_RANK"]) for p in p1.processes] == [(3, "0"), (4, "1")]
    assert p0.env["WORLD_SIZE"] == "5" and p0.env["AZ_BATCHAI_PYTORCH_BACKEND"] == "nccl"
    assert "RANK" not in p0.env and p0.command is not None
    assert "export RANK=3 LOCAL_RANK=0 AZ_BATCHAI_TASK_INDEX=3" in (p1.command or "")


def test_pytorch_tcp_backend_maps_to_gloo_and_mpi_runs_through_mpirun() -> None:
    tcp = plan_task(job("pyTorchSettings", {"pythonScriptFilePath": "t.py", "communicationBackend": "TCP"}, 2), 0, N2)
    assert tcp.env["AZ_BATCHAI_PYTORCH_BACKEND"] == "gloo"
    mpi = plans(job("pyTorchSettings", {"pythonScriptFilePath": "t.py", "communicationBackend": "MPI"}, 2), N2)
    assert "mpirun" in (mpi[0].command or "") and mpi[0].env["AZ_BATCHAI_PYTORCH_BACKEND"] == "mpi"
    assert mpi[1].command is None


def test_gang_port_is_deterministic_and_in_range() -> None:
    assert gang_port("a") == gang_port("a")
    assert all(29500 <= gang_port(str(i)) < 30500 for i in range(200))
    assert len({gang_port(str(i)) for i in range(50)}) > 10


MPI_TOOLKITS = [
    (
        "customMpiSettings",
        {"commandLine": "python -u $AZ_BATCHAI_INPUT_SCRIPT/b.py"},
        "python -u $AZ_BATCHAI_INPUT_SCRIPT/b.py",
    ),
    ("horovodSettings", {"pythonScriptFilePath": "h.py", "commandLineArgs": "--x"}, "python h.py --x"),
    ("chainerSettings", {"pythonScriptFilePath": "c.py"}, "python c.py"),
    (
        "cntkSettings",
        {"configFilePath": "d.cntk", "commandLineArgs": "parallelTrain=true"},
        "cntk configFile=d.cntk parallelTrain=true",
    ),
    ("caffeSettings", {"pythonScriptFilePath": "p.py"}, "python p.py"),
]


@pytest.mark.parametrize(("toolkit", "settings", "inner"), MPI_TOOLKITS)
def test_mpi_toolkits_run_mpirun_on_the_master(toolkit: str, settings: dict[str, Any], inner: str) -> None:
    j = job(toolkit, settings, 2, environmentVariables=[{"name": "MY_VAR", "value": "1"}])
    master, worker = plans(j, N2)
    assert master.command is not None
    assert "printf '%s\\n' '10.0.0.4 slots=1' '10.0.0.5 slots=1' > \"$AZ_BATCHAI_MPI_HOST_FILE\"" in master.command
    assert master.command.endswith(
        "mpirun --allow-run-as-root --oversubscribe --bind-to none"
        ' --hostfile "$AZ_BATCHAI_MPI_HOST_FILE" -np 2 "$@" "$BATCHAI_SHELL" -c ' + f"'{inner}'"
    )
    assert " PATH LD_LIBRARY_PATH PYTHONPATH MY_VAR; do" in master.command
    assert master.required
    assert worker.command is None and not worker.required


def test_mpi_host_file_slots_follow_process_count_and_collapse_same_host() -> None:
    remote = plan_task(job("horovodSettings", {"pythonScriptFilePath": "h.py", "processCount": 8}, 2), 0, N2)
    assert "'10.0.0.4 slots=4' '10.0.0.5 slots=4'" in (remote.command or "")
    assert "-np 8" in (remote.command or "")
    uneven = plan_task(job("customMpiSettings", {"commandLine": "x", "processCount": 3}, 3), 0, N3)
    assert "'10.0.0.4 slots=1' '10.0.0.5 slots=1' '10.0.0.6 slots=1'" in (uneven.command or "")
    local = [NodeAddress("a", "127.0.0.1"), NodeAddress("b", "127.0.0.1")]
    collapsed = plan_task(job("customMpiSettings", {"commandLine": "x", "processCount": 5}, 2), 0, local)
    assert "printf '%s\\n' '127.0.0.1 slots=5' >" in (collapsed.command or "")


def test_caffe2_runs_on_every_node_with_its_task_index() -> None:
    settings = {"pythonScriptFilePath": "r.py", "commandLineArgs": "--shard_id $AZ_BATCHAI_TASK_INDEX"}
    for rank, plan in enumerate(plans(job("caffe2Settings", settings, 3), N3)):
        assert plan.command == "python r.py --shard_id $AZ_BATCHAI_TASK_INDEX"
        assert plan.env == {"AZ_BATCHAI_TASK_INDEX": str(rank)}
        assert plan.required


@pytest.mark.parametrize(
    ("j", "code"),
    [
        ({"nodeCount": 1}, "ToolkitNotSpecified"),
        ({"customToolkitSettings": {}, "customMpiSettings": {"commandLine": "x"}}, "MultipleToolkits"),
        ({"pyTorchSettings": {}}, "InvalidToolkitSettings"),
        (
            {"pyTorchSettings": {"pythonScriptFilePath": "t.py", "communicationBackend": "carrier-pigeon"}},
            "InvalidToolkitSettings",
        ),
        ({"caffeSettings": {"configFilePath": "a", "pythonScriptFilePath": "b"}}, "InvalidToolkitSettings"),
        ({"cntkSettings": {"languageType": "Lua"}}, "InvalidToolkitSettings"),
        ({"customMpiSettings": {"commandLine": "x", "processCount": 0}}, "InvalidProcessCount"),
    ],
)
def test_invalid_settings_raise_plan_error(j: dict[str, Any], code: str) -> None:
    from shared.decisions.toolkits import PlanError

    with pytest.raises(PlanError) as err:
        plan_task(j, 0, N1)
    assert err.value.code == code
