"""`batchai job create`'s job arrays and dependencies: --array N, --max-concurrent K and --depends-on
NAME[:succeeded|ended] (repeatable), over the same properties of the job file (`array`, `dependsOn`).

The SDK's JobCreateParameters has no field for these additions, so they are merged into the
request body's `properties` as the SDK sends it (a request hook of its own pipeline); the service
validates them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shared.cli.context import CliError

CONDITIONS = ("succeeded", "ended")

ArrayOpt = Annotated[int | None, typer.Option(
    "--array", help="Run the job as an array of N tasks, each a child job NAME-<i> with AZ_BATCHAI_ARRAY_INDEX=i.",
    show_default=False)]
MaxConcurrentOpt = Annotated[int | None, typer.Option(
    "--max-concurrent", help="At most K tasks of the array at once (default: all).", show_default=False)]
DependsOnOpt = Annotated[list[str] | None, typer.Option(
    "--depends-on", help="Run only after this job (a name in the experiment, or a job id) succeeded, or with "
                         "':ended' after it ended in any way; repeatable.", show_default=False)]


def dependency(text: str) -> dict[str, str]:
    """NAME[:succeeded|ended] as a dependsOn entry."""
    job, sep, condition = text.rpartition(":")
    if not sep or condition not in CONDITIONS:
        job, condition = text, CONDITIONS[0]
    if not job:
        raise CliError(f"--depends-on {text!r}: name the job (NAME[:succeeded|ended])", exit_code=2)
    return {"job": job, "condition": condition}


def additions(from_file: dict[str, Any], array: int | None, max_concurrent: int | None,
              depends_on: list[str] | None) -> dict[str, Any]:
    """The body's additions: the file's, with the flags over them (--depends-on adds to the file's)."""
    out = dict(from_file)
    if array is not None or max_concurrent is not None:
        spec = dict(out.get("array") or {})
        if array is not None:
            spec["count"] = array
        if max_concurrent is not None:
            spec["maxConcurrent"] = max_concurrent
        if "count" not in spec:
            raise CliError("--max-concurrent needs --array N (or properties.array in the job file)", exit_code=2)
        out["array"] = spec
    if depends_on:
        out["dependsOn"] = [*(out.get("dependsOn") or []), *(dependency(d) for d in depends_on)]
    return out
