"""Job dependencies: whether a waiting job may run, must keep waiting, or can never run. Pure.

A dependency is another job and a condition: `succeeded` (it must end succeeded) or `ended` (any
end will do). A dependency that no longer exists (deleted) has ended, but not succeeded. The first
dependency that can no longer hold, in the order the job gave them, names the failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.domain.job_links import CONDITIONS

SUCCEEDED, ENDED = CONDITIONS
TERMINAL = frozenset({"succeeded", "failed"})

WAIT, RELEASE, FAIL = "wait", "release", "fail"


@dataclass(frozen=True)
class Dependency:
    job: str  # the dependency's name, as messages show it
    condition: str  # SUCCEEDED | ENDED
    phase: str | None  # the dependency's phase now; None when it no longer exists


@dataclass(frozen=True)
class Verdict:
    kind: str  # WAIT | RELEASE | FAIL
    job: str = ""  # FAIL: the dependency that can no longer hold
    message: str = ""


def _broken(dep: Dependency) -> str | None:
    """Why the dependency can never hold, or None."""
    if dep.condition != SUCCEEDED:
        return None
    if dep.phase is None:
        return f"The dependency '{dep.job}' was deleted before it succeeded."
    if dep.phase == "failed":
        return f"The dependency '{dep.job}' failed; this job runs only after it succeeds."
    return None


def _met(dep: Dependency) -> bool:
    if dep.condition == ENDED:
        return dep.phase is None or dep.phase in TERMINAL
    return dep.phase == "succeeded"


def verdict(dependencies: Sequence[Dependency]) -> Verdict:
    for dep in dependencies:
        why = _broken(dep)
        if why is not None:
            return Verdict(FAIL, dep.job, why)
    if all(_met(dep) for dep in dependencies):
        return Verdict(RELEASE)
    waiting = [dep.job for dep in dependencies if not _met(dep)]
    return Verdict(WAIT, message=f"Waiting for {', '.join(repr(j) for j in waiting)}.")
