"""What the chaos tests' jobs record, and the checks every chaos test makes.

Every job runs `job_command`: it appends `start`, a `tick` every 0.1 s and `end` lines, each naming
the job, the node it runs on and its pid, to one run log on the cluster's file share (appends of a
line are atomic, so the log's order is the order in which the lines were written), and writes its
output file before `end`. The checks use that order only, never clock times: a run of a job that
writes a line after a later run of the same job has started ran in two places at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from azure.mgmt.batchai import models

OUTPUT_ID = "OUT"
TERMINAL = ("succeeded", "failed")


def job_command(log_on_node: str, job: str, ticks: int, first_ticks: int | None = None) -> str:
    """A job's command: records its run in `log_on_node` (the log as nodes see it) and writes its output.
    Its first run works `first_ticks` ticks (default: `ticks`), later runs `ticks`."""
    me = f'{job} "$(hostname):$AZ_BATCHAI_MOUNT_ROOT" $$'
    first = ticks if first_ticks is None else first_ticks
    return (f'log="{log_on_node}"; n={ticks}; mkdir "$log.{job}.ran" 2>/dev/null && n={first}; '
            f'echo "start {me}" >> "$log"; '
            f'for i in $(seq $n); do echo "tick {me} $i" >> "$log"; sleep 0.1; done; '
            f'echo "{job}" > "$AZ_BATCHAI_OUTPUT_{OUTPUT_ID}/result.txt"; echo "end {me}" >> "$log"')


def output_directories() -> list[models.OutputDirectory]:
    return [models.OutputDirectory(id=OUTPUT_ID, path_prefix="$AZ_BATCHAI_JOB_TEMP")]


@dataclass(frozen=True)
class Line:
    kind: str  # start | tick | end
    job: str
    node: str  # "<hostname>:<mount root>": the node the run is on
    pid: str

    @property
    def run(self) -> tuple[str, str]:
        return self.node, self.pid


@dataclass
class RunLog:
    path: Path  # the log on this machine
    on_node: str  # the log as nodes see it

    def lines(self) -> list[Line]:
        if not self.path.exists():
            return []
        found = []
        for text in self.path.read_text().splitlines():
            parts = text.split()
            if len(parts) >= 4 and parts[0] in ("start", "tick", "end"):
                found.append(Line(parts[0], parts[1], parts[2], parts[3]))
        return found

    def runs(self) -> dict[str, list[tuple[str, str]]]:
        """job -> its runs (node, pid), in the order they started."""
        runs: dict[str, list[tuple[str, str]]] = {}
        for line in self.lines():
            if line.kind == "start":
                runs.setdefault(line.job, []).append(line.run)
        return runs

    def started(self, job: str) -> list[tuple[str, str]]:
        return self.runs().get(job, [])

    def overlaps(self) -> list[str]:
        """Lines written by a run of a job after a later run of that job had started."""
        current: dict[str, tuple[str, str]] = {}
        retired: dict[str, set[tuple[str, str]]] = {}
        found = []
        for line in self.lines():
            if line.kind == "start":
                if line.job in current:
                    retired.setdefault(line.job, set()).add(current[line.job])
                current[line.job] = line.run
            elif line.run in retired.get(line.job, set()):
                found.append(f"{line.kind} of {line.job} on {line.node} pid {line.pid} after a later run started")
        return found


def node_id_of(node: str) -> str:
    """The node id in a process node's tag (its mount root is <state>/nodes/<id>/mounts)."""
    return Path(node.split(":", 1)[1]).parent.name


@dataclass
class Verdict:
    states: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def check_jobs(stack: object, ws: str, exp: str, names: Iterable[str], log: RunLog) -> Verdict:
    """Every job reached exactly one terminal state, with a reason when it failed; a succeeded job has
    its output; no job ran in two places at once. The verdict: each job's state and errors."""
    from tests.e2e.conftest import Stack

    assert isinstance(stack, Stack)
    verdict = Verdict()
    listed = {j.name: j for j in stack.client.jobs.list_by_experiment(stack.rg, ws, exp)}
    for name in names:
        assert name in listed, f"acknowledged job {name} is missing"
        job = stack.client.jobs.get(stack.rg, ws, exp, name)
        state = job.execution_state
        assert state in TERMINAL, (name, state)
        errors = [(e.code, e.message) for e in (job.execution_info.errors if job.execution_info else None) or []]
        verdict.states[name], verdict.errors[name] = state, errors
        assert all(code and message for code, message in errors), (name, errors)
        if state == "failed":
            assert errors, f"{name} failed with no reason"
        else:
            assert job.execution_info.exit_code == 0, (name, job.execution_info)
            files = stack.output_files(ws, exp, name, directory_id=OUTPUT_ID)
            assert "result.txt" in files, (name, sorted(files))
            assert stack.download(files["result.txt"].download_url).strip() == name
            assert log.started(name), f"{name} succeeded without a recorded run"
    assert log.overlaps() == []
    return verdict
