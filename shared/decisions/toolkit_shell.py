"""The POSIX shell pieces of task plans: MPI host files, mpirun lines, several processes on one node.

Pure string building for `shared.decisions.toolkits`. Every command built here runs under bash on a
host and under `sh -c` in a container (busybox has no bash), so it uses POSIX sh only. User text
(script paths, command line arguments) is inserted as written: it refers to `$AZ_BATCHAI_*`
variables that the shell of the task expands.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HOST_FILE_NAME = "mpi-hostfile"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables every MPI rank needs besides the AZ_BATCHAI_* ones, forwarded when set.
_MPI_FORWARDED = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH")
# How long a process that is no longer needed (a parameter server) has to end after TERM.
STOP_GRACE_SECONDS = 30


@dataclass(frozen=True)
class ShellProcess:
    command: str  # a shell command line, user text as written
    exports: dict[str, str]  # variables of this process only
    required: bool  # its exit decides the node's exit; others are stopped when the required ones end
    output: str = ""  # its own stdout-<output>.txt / stderr-<output>.txt in $AZ_BATCHAI_STDOUTERR_DIR


def spread(count: int, slots: int) -> list[int]:
    """`count` processes over `slots` nodes in rank order: the first `count % slots` get one more."""
    return [count // slots + (1 if i < count % slots else 0) for i in range(slots)]


def host_file_lines(addresses: Sequence[str], slots: Sequence[int]) -> list[str]:
    """Open MPI host file lines; one line per distinct address with the summed slots, in first-seen order.

    Locally every node of a gang is 127.0.0.1: one line with all slots makes mpirun start every rank
    on this host instead of refusing a duplicate host.
    """
    summed: dict[str, int] = {}
    for address, n in zip(addresses, slots, strict=True):
        if n > 0:
            summed[address] = summed.get(address, 0) + n
    return [f"{address} slots={n}" for address, n in summed.items()]


def host_file_prologue(lines: Sequence[str]) -> str:
    """Write the host file under the job's temp directory and export AZ_BATCHAI_MPI_HOST_FILE."""
    quoted = " ".join(shlex.quote(line) for line in lines)
    return (
        f'export AZ_BATCHAI_MPI_HOST_FILE="${{AZ_BATCHAI_JOB_TEMP:-${{TMPDIR:-/tmp}}}}/{HOST_FILE_NAME}"\n'
        f"printf '%s\\n' {quoted} > \"$AZ_BATCHAI_MPI_HOST_FILE\"\n"
    )


def valid_env_names(names: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for name in names:
        if _ENV_NAME.match(name) and name not in seen:
            seen.append(name)
    return seen


def mpirun_command(process_count: int, inner: str, forward: Iterable[str] = ()) -> str:
    """mpirun over the host file with `-np process_count`, forwarding the task's environment with `-x`.

    Every AZ_BATCHAI_* variable that is set, PATH, LD_LIBRARY_PATH, PYTHONPATH and `forward` (the job's
    own variables) are passed with `-x` when set, so remote ranks see the same environment. `inner`
    runs under the rank's own shell, so per-rank variables (OMPI_COMM_WORLD_RANK, ...) expand there.
    """
    names = " ".join(valid_env_names([*_MPI_FORWARDED, *forward]))
    return (
        "set --\n"
        f"for v in $(env | sed -n 's/^\\(AZ_BATCHAI_[A-Za-z0-9_]*\\)=.*/\\1/p') {names}; do\n"
        '  eval "[ -n \\"\\${$v+set}\\" ]" && set -- "$@" -x "$v"\n'
        "done\n"
        'BATCHAI_SHELL="$(command -v bash || command -v sh)"\n'
        "mpirun --allow-run-as-root --oversubscribe --bind-to none"
        f' --hostfile "$AZ_BATCHAI_MPI_HOST_FILE" -np {process_count} "$@"'
        f' "$BATCHAI_SHELL" -c {shlex.quote(inner)}'
    )


def exports(env: dict[str, str]) -> str:
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def run_processes(processes: Sequence[ShellProcess], kill_after: int = STOP_GRACE_SECONDS) -> str:
    """Start every process in the background, wait for the required ones, then stop the rest.

    Exits with the first non-zero exit code of a required process (0 when all succeed). A TERM or
    INT to the shell (the agent stopping the task; `docker stop` to PID 1) is passed to every process.
    The trap is set only once every process has started: a child forked while it is set could lose
    a TERM that reaches it before it drops the inherited trap. A process that outlives TERM by
    `kill_after` seconds is killed.
    """
    lines = ["pids=''"]
    for i, p in enumerate(processes):
        prefix = f"{exports(p.exports)}; " if p.exports else ""
        redirect = (f' >>"$AZ_BATCHAI_STDOUTERR_DIR/stdout-{p.output}.txt"'
                    f' 2>>"$AZ_BATCHAI_STDOUTERR_DIR/stderr-{p.output}.txt"') if p.output else ""
        lines.append(f'({prefix}exec {p.command}){redirect} & p{i}=$!; pids="$pids $p{i}"')
    lines.append("trap 'kill $pids 2>/dev/null; exit 143' TERM INT")
    lines.append("rc=0")
    # a node of optional processes only (parameter servers) runs until the agent stops it
    waited = [p.required for p in processes] if any(p.required for p in processes) else [True] * len(processes)
    for i in range(len(processes)):
        if waited[i]:
            lines.append(f'wait "$p{i}"; s=$?; [ "$rc" -ne 0 ] || rc=$s')
    for i in range(len(processes)):
        if not waited[i]:
            lines.append(
                f'kill "$p{i}" 2>/dev/null; (sleep {kill_after}; kill -9 "$p{i}" 2>/dev/null) & t=$!;'
                f' wait "$p{i}" 2>/dev/null; kill -9 "$t" 2>/dev/null'
            )
    lines.append('exit "$rc"')
    return "\n".join(lines)
