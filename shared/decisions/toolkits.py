"""What each task of a job runs: the toolkit settings of a job turned into a command and env.

Pure: the job's properties, the task index and the gang's addresses in; a `TaskPlan` out.
Every toolkit of the 2018-05-01 contract is decided here and nowhere else.

A job of `nodeCount` N runs as N tasks, one per node of its gang (`nodes`, rank order, nodes[0]
the master). Per toolkit:

- customToolkitSettings: `commandLine` on the master only.
- customMpiSettings, horovodSettings: the master runs `mpirun -np processCount` over a host file of
  the gang (AZ_BATCHAI_MPI_HOST_FILE); the other nodes serve the ranks mpirun starts on them.
- chainerSettings, cntkSettings, caffeSettings: the same through mpirun when processCount > 1, else
  one process on the master.
- caffe2Settings: the script on every node (scripts shard by $AZ_BATCHAI_TASK_INDEX).
- pyTorchSettings: processCount processes spread over the nodes in rank order (node i runs ranks
  [sum of the counts before i, + its count)), each with MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK/
  LOCAL_RANK and AZ_BATCHAI_PYTORCH_INIT_METHOD=tcp://master:port; backend "mpi" runs via mpirun.
- tensorFlowSettings: workerCount workers and parameterServerCount parameter servers; process k of
  [worker 0.., ps 0..] runs on node k % N and listens on port + k; worker 0 is the master and gets
  masterCommandLineArgs. Each gets AZ_BATCHAI_PS_HOSTS, AZ_BATCHAI_WORKER_HOSTS, its
  AZ_BATCHAI_TASK_INDEX (index within its type) and TF_CONFIG. Workers decide the job; parameter
  servers are stopped when the workers on their node end (or by the agent when the job ends). Each
  process writes its own stdout-wk-<i>.txt / stdout-ps-<i>.txt (and stderr-) in the stdouterr
  directory, as Batch AI named them.

When a node runs several processes, `TaskPlan.command` starts them all (see `run_processes`), each
with its own variables exported inside the command; `TaskPlan.processes` lists them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from shared.decisions.toolkit_shell import (
    ShellProcess,
    host_file_lines,
    host_file_prologue,
    mpirun_command,
    run_processes,
    spread,
)
from shared.domain.messages import NodeAddress

DEFAULT_PORT = 29500
TOOLKITS = (
    "customToolkitSettings",
    "customMpiSettings",
    "horovodSettings",
    "chainerSettings",
    "cntkSettings",
    "caffeSettings",
    "caffe2Settings",
    "pyTorchSettings",
    "tensorFlowSettings",
)
# communicationBackend values of the contract ('TCP', 'Gloo', 'MPI') and NCCL, as torch names them.
# PyTorch dropped its TCP backend in 1.0; gloo replaced it on CPU and GPU.
_TORCH_BACKENDS = {"tcp": "gloo", "gloo": "gloo", "nccl": "nccl", "mpi": "mpi"}


@dataclass
class ProcessPlan:
    role: str  # "master" | "worker" | "ps" | "rank" | "mpirun"
    index: int  # index within its role (TensorFlow) or global rank (PyTorch)
    command: str
    env: dict[str, str] = field(default_factory=dict)
    required: bool = True
    output: str = ""  # its own output files' infix (TensorFlow, as Batch AI named them: "wk-0", "ps-0")

    def output_files(self) -> list[str]:
        return [f"{kind}-{self.output}.txt" for kind in ("stdout", "stderr")] if self.output else []


@dataclass
class TaskPlan:
    """What one node of a gang runs.

    `env` goes over the agent's own AZ_BATCHAI_* variables (it may set AZ_BATCHAI_TASK_INDEX to a
    process index that differs from the node's rank). `command` is None when the node only serves
    the gang until told to stop; `required` says whether its exit decides the job.
    """

    command: str | None  # a bash (or sh) command line; None: this node only serves the gang until told to stop
    env: dict[str, str] = field(default_factory=dict)
    required: bool = True  # the job succeeds only when every required task exits 0
    processes: list[ProcessPlan] = field(default_factory=list)  # what `command` starts on this node


class PlanError(ValueError):
    """The job's toolkit settings cannot be run (a permanent error of the job)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def gang_port(key: str) -> int:
    """A deterministic port for a job's gang (MASTER_PORT, TensorFlow's first port): 29500..30499."""
    return DEFAULT_PORT + int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 1000


def plan_task(job: dict[str, Any], task_index: int, nodes: list[NodeAddress], port: int = DEFAULT_PORT) -> TaskPlan:
    """The plan of task `task_index` (the node's rank in `nodes`). `port` must be the same on every rank."""
    if not nodes or not 0 <= task_index < len(nodes):
        raise PlanError("InvalidTaskIndex", f"task index {task_index} is outside a gang of {len(nodes)} nodes")
    present = [name for name in TOOLKITS if job.get(name) is not None]
    if not present:
        raise PlanError("ToolkitNotSpecified", "the job specifies no toolkit settings")
    if len(present) > 1:
        raise PlanError("MultipleToolkits", f"the job specifies more than one toolkit: {', '.join(present)}")
    name = present[0]
    settings: dict[str, Any] = job[name]
    ctx = _Gang(job, task_index, nodes, port)
    return _PLANNERS[name](settings, ctx)


@dataclass(frozen=True)
class _Gang:
    job: dict[str, Any]
    rank: int
    nodes: list[NodeAddress]
    port: int

    @property
    def master(self) -> bool:
        return self.rank == 0

    def process_count(self, settings: dict[str, Any]) -> int:
        count = settings.get("processCount")
        if count is None:
            return len(self.nodes)
        if int(count) < 1:
            raise PlanError("InvalidProcessCount", f"processCount must be at least 1, got {count}")
        return int(count)

    def user_env_names(self) -> list[str]:
        return [e["name"] for e in [*(self.job.get("environmentVariables") or []), *(self.job.get("secrets") or [])]]


def _serve() -> TaskPlan:
    return TaskPlan(command=None, required=False)


def _script(settings: dict[str, Any], args: str | None = None, args_key: str = "commandLineArgs") -> str:
    """`<interpreter> <script> <args>`; the interpreter defaults to `python`."""
    script = settings.get("pythonScriptFilePath")
    if not script:
        raise PlanError("InvalidToolkitSettings", "pythonScriptFilePath is required")
    own_args = args if args is not None else settings.get(args_key)
    return _join(settings.get("pythonInterpreterPath") or "python", script, own_args)


def _join(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


def _on_master(ctx: _Gang, command: str, env: dict[str, str] | None = None) -> TaskPlan:
    if not ctx.master:
        return _serve()
    if "AZ_BATCHAI_MPI_HOST_FILE" in command:
        command = host_file_prologue(_host_lines(ctx, [1] * len(ctx.nodes))) + command
    env = env or {}
    return TaskPlan(command=command, env=env, processes=[ProcessPlan("master", 0, command, env)])


def _host_lines(ctx: _Gang, slots: list[int]) -> list[str]:
    return host_file_lines([n.address for n in ctx.nodes], slots)


def _via_mpirun(ctx: _Gang, process_count: int, inner: str, env: dict[str, str] | None = None) -> TaskPlan:
    """The master runs mpirun over the gang; the other nodes serve the ranks mpirun starts on them."""
    if not ctx.master:
        return _serve()
    slots = spread(process_count, len(ctx.nodes))
    command = host_file_prologue(_host_lines(ctx, slots)) + mpirun_command(
        process_count, inner, [*ctx.user_env_names(), *(env or {})]
    )
    env = env or {}
    return TaskPlan(command=command, env=env, processes=[ProcessPlan("mpirun", 0, command, env)])


def _custom(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    return _on_master(ctx, settings.get("commandLine") or "")


def _custom_mpi(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    command = settings.get("commandLine")
    if not command:
        raise PlanError("InvalidToolkitSettings", "customMpiSettings.commandLine is required")
    return _via_mpirun(ctx, ctx.process_count(settings), command)


def _horovod(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    return _via_mpirun(ctx, ctx.process_count(settings), _script(settings))


def _mpi_when_distributed(settings: dict[str, Any], ctx: _Gang, command: str) -> TaskPlan:
    count = ctx.process_count(settings)
    if count > 1:
        return _via_mpirun(ctx, count, command)
    return _on_master(ctx, command)


def _chainer(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    return _mpi_when_distributed(settings, ctx, _script(settings))


def _cntk(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    language = (settings.get("languageType") or "").lower()
    if not language:
        language = "python" if settings.get("pythonScriptFilePath") else "brainscript"
    if language == "brainscript":
        config = settings.get("configFilePath")
        if not config:
            raise PlanError("InvalidToolkitSettings", "cntkSettings.configFilePath is required for BrainScript")
        command = _join("cntk", f"configFile={config}", settings.get("commandLineArgs"))
    elif language == "python":
        command = _script(settings)
    else:
        raise PlanError(
            "InvalidToolkitSettings", f"cntkSettings.languageType must be BrainScript or Python, got {language}"
        )
    return _mpi_when_distributed(settings, ctx, command)


def _caffe(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    config, script = settings.get("configFilePath"), settings.get("pythonScriptFilePath")
    if bool(config) == bool(script):
        raise PlanError(
            "InvalidToolkitSettings", "caffeSettings needs exactly one of configFilePath, pythonScriptFilePath"
        )
    if script:
        return _mpi_when_distributed(settings, ctx, _script(settings))
    args = settings.get("commandLineArgs") or ""
    # Train on every GPU of the node unless the arguments choose GPUs themselves.
    gpus = "" if "-gpu" in args else '$([ "${AZ_BATCHAI_NUM_GPUS:-0}" -gt 0 ] && echo --gpu=all)'
    return _mpi_when_distributed(settings, ctx, _join("caffe train", f"--solver={config}", gpus, args))


def _caffe2(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    command = _script(settings)
    env = {"AZ_BATCHAI_TASK_INDEX": str(ctx.rank)}
    return TaskPlan(command=command, env=env, processes=[ProcessPlan("worker", ctx.rank, command, env)])


def _pytorch(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    command = _script(settings)
    count = ctx.process_count(settings)
    raw_backend = (settings.get("communicationBackend") or "gloo").lower()
    backend = _TORCH_BACKENDS.get(raw_backend)
    if backend is None:
        raise PlanError(
            "InvalidToolkitSettings", f"communicationBackend must be TCP, Gloo, NCCL or MPI, got {raw_backend}"
        )
    if count <= 1:
        return _on_master(ctx, command)
    master = ctx.nodes[0].address
    common = {
        "MASTER_ADDR": master,
        "MASTER_PORT": str(ctx.port),
        "WORLD_SIZE": str(count),
        "AZ_BATCHAI_PYTORCH_BACKEND": backend,
        "AZ_BATCHAI_PYTORCH_INIT_METHOD": f"tcp://{master}:{ctx.port}",
    }
    if backend == "mpi":  # ranks come from MPI itself
        return _via_mpirun(ctx, count, command, common)
    per_node = spread(count, len(ctx.nodes))
    first = sum(per_node[: ctx.rank])
    ranks = range(first, first + per_node[ctx.rank])
    processes = [
        ProcessPlan(
            "rank",
            rank,
            command,
            {
                **common,
                "RANK": str(rank),
                "LOCAL_RANK": str(local),
                "LOCAL_WORLD_SIZE": str(len(ranks)),
                "NODE_RANK": str(ctx.rank),
                "AZ_BATCHAI_TASK_INDEX": str(rank),
            },
        )
        for local, rank in enumerate(ranks)
    ]
    return _node_plan(processes)


def _tensorflow(settings: dict[str, Any], ctx: _Gang) -> TaskPlan:
    n = len(ctx.nodes)
    workers = int(settings.get("workerCount") or n)
    ps_setting = settings.get("parameterServerCount")
    ps = int(ps_setting) if ps_setting is not None else (1 if workers > 1 else 0)
    if workers < 1 or ps < 0:
        raise PlanError(
            "InvalidToolkitSettings", f"workerCount must be >= 1 and parameterServerCount >= 0 ({workers}, {ps})"
        )
    master_args = settings.get("masterCommandLineArgs")
    if workers == 1 and ps == 0:
        return _on_master(ctx, _script(settings, args=master_args or ""))
    # process k of [worker 0.., ps 0..] runs on node k % n and listens on port + k
    roles = [("worker", i) for i in range(workers)] + [("ps", j) for j in range(ps)]
    hosts = [f"{ctx.nodes[k % n].address}:{ctx.port + k}" for k in range(len(roles))]
    cluster = {"worker": hosts[:workers]}
    if ps:
        cluster = {"ps": hosts[workers:], **cluster}
    common = {"AZ_BATCHAI_WORKER_HOSTS": ",".join(hosts[:workers])}
    if ps:
        common["AZ_BATCHAI_PS_HOSTS"] = ",".join(hosts[workers:])
    args = {"ps": settings.get("parameterServerCommandLineArgs"), "worker": settings.get("workerCommandLineArgs")}
    processes = []
    for k in range(ctx.rank, len(roles), n):
        role, index = roles[k]
        own_args = master_args if (role, index) == ("worker", 0) and master_args else args[role]
        tf_config = {"cluster": cluster, "task": {"type": role, "index": index}, "environment": "cloud"}
        env = {**common, "AZ_BATCHAI_TASK_INDEX": str(index), "TF_CONFIG": json.dumps(tf_config, separators=(",", ":"))}
        processes.append(
            ProcessPlan(
                "master" if k == 0 else role,
                index,
                _script(settings, args=own_args or ""),
                env,
                required=role == "worker",
                output=f"{'wk' if role == 'worker' else 'ps'}-{index}",
            )
        )
    return _node_plan(processes)


def _node_plan(processes: list[ProcessPlan]) -> TaskPlan:
    """One process: its command and env as they are. Several: one command that starts them all."""
    if not processes:
        return _serve()
    required = any(p.required for p in processes)
    if len(processes) == 1 and not processes[0].output:
        p = processes[0]
        return TaskPlan(command=p.command, env=dict(p.env), required=required, processes=processes)
    # AZ_BATCHAI_TASK_INDEX is always exported per process: it must beat the agent's node-rank default.
    shared = {
        k: v
        for k, v in processes[0].env.items()
        if k != "AZ_BATCHAI_TASK_INDEX" and all(p.env.get(k) == v for p in processes)
    }
    shell = [
        ShellProcess(p.command, {k: v for k, v in p.env.items() if k not in shared}, p.required, p.output)
        for p in processes
    ]
    return TaskPlan(command=run_processes(shell), env=shared, required=required, processes=processes)


_PLANNERS = {
    "customToolkitSettings": _custom,
    "customMpiSettings": _custom_mpi,
    "horovodSettings": _horovod,
    "chainerSettings": _chainer,
    "cntkSettings": _cntk,
    "caffeSettings": _caffe,
    "caffe2Settings": _caffe2,
    "pyTorchSettings": _pytorch,
    "tensorFlowSettings": _tensorflow,
}
