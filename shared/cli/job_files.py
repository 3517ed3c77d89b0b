"""`batchai job file ...`: list a job's output files (listOutputFiles) and stream one while the job runs.

Streaming reads the file through its listOutputFiles download URL with HTTP Range requests from the last
offset, like `tail -f`, and stops once the job has ended and the file has no more bytes.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import httpx
import typer
from azure.mgmt.batchai import BatchAI, models

from shared.cli.common import GroupOpt, OutputOpt, output_format, pick, session
from shared.cli.context import CliError
from shared.cli.output import message, show_list

app = typer.Typer(help="A job's output files: stdout/stderr and its output directories.", no_args_is_help=True)

ENDED = ("succeeded", "failed")

WorkspaceArg = Annotated[str | None, typer.Argument(help="Workspace name (or -w).", show_default=False)]
ExperimentArg = Annotated[str | None, typer.Argument(help="Experiment name (or -e).", show_default=False)]
JobArg = Annotated[str | None, typer.Argument(help="Job name (or -j).", show_default=False)]
WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace name.")]
ExperimentOpt = Annotated[str | None, typer.Option("--experiment", "-e", help="Experiment name.")]
JobOpt = Annotated[str | None, typer.Option("--job", "-j", help="Job name.")]
DirectoryIdOpt = Annotated[str, typer.Option("--output-directory-id", "-d",
                                             help="stdouterr, or the id of one of the job's output directories.")]
PathOpt = Annotated[str, typer.Option("--path", "-p", help="A directory inside the output directory.")]


def names(workspace: str | None, workspace_opt: str | None, experiment: str | None, experiment_opt: str | None,
          job: str | None, job_opt: str | None) -> tuple[str, str, str]:
    return (pick("the workspace", workspace, workspace_opt, "--workspace/-w"),
            pick("the experiment", experiment, experiment_opt, "--experiment/-e"),
            pick("the job", job, job_opt, "--job/-j"))

COLUMNS = [
    ("Name", lambda f: f.name),
    ("Type", lambda f: f.file_type),
    ("Size", lambda f: f.content_length),
    ("Modified", lambda f: f.last_modified),
    ("URL", lambda f: f.download_url),
]


def list_files(client: BatchAI, group: str, workspace: str, experiment: str, job: str, directory_id: str,
               path: str, expiry_minutes: int = 60) -> list[models.File]:
    options = models.JobsListOutputFilesOptions(outputdirectoryid=directory_id, directory=path,
                                                linkexpiryinminutes=expiry_minutes)
    return list(client.jobs.list_output_files(group, workspace, experiment, job, options))


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None, job: JobArg = None,
          workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, job_opt: JobOpt = None,
          directory_id: DirectoryIdOpt = "stdouterr", path: PathOpt = ".",
          expiry: Annotated[int, typer.Option("--expiry", min=5, max=600,
                                              help="Minutes the download URLs stay valid.")] = 60,
          group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List a job's output files with their download URLs (names relative to --path)."""
    s = session(ctx)
    workspace, experiment, job = names(workspace, workspace_opt, experiment, experiment_opt, job, job_opt)
    files = list_files(s.client, s.resource_group(group), workspace, experiment, job, directory_id, path, expiry)
    show_list(files, COLUMNS, output_format(ctx, output), title=f"{job}: {directory_id}/{path.strip('./')}")


class RangeReader:
    """Reads what a growing file gained since the last read, through (refreshed) download URLs."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.offset = 0

    def read_new(self, url: str) -> bytes:
        response = self.http.get(url, headers={"Range": f"bytes={self.offset}-"})
        if response.status_code == 416:  # nothing past the offset yet
            return b""
        response.raise_for_status()
        data = response.content
        if response.status_code == 200:  # the server sent the whole file
            data = data[self.offset:]
        self.offset += len(data)
        return data


@app.command("stream")
def stream(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None, job: JobArg = None,
           workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, job_opt: JobOpt = None,
           file_name: Annotated[str, typer.Option(
               "--file-name", "-f", help="The file to follow, by its name in --path.")] = "stdout.txt",
           directory_id: DirectoryIdOpt = "stdouterr", path: PathOpt = ".",
           interval: Annotated[float, typer.Option(help="Seconds between reads.")] = 1.0,
           group: GroupOpt = None) -> None:
    """Print a job's output file as it grows (tail -f), until the job ends."""
    s = session(ctx)
    rg = s.resource_group(group)
    workspace, experiment, job = names(workspace, workspace_opt, experiment, experiment_opt, job, job_opt)
    seen = False
    with httpx.Client(timeout=30) as http:  # download URLs are storage SAS URLs: the system CAs apply
        reader = RangeReader(http)
        while True:
            state = s.client.jobs.get(rg, workspace, experiment, job).execution_state
            files = {f.name: f for f in list_files(s.client, rg, workspace, experiment, job, directory_id, path)}
            found = files.get(file_name)
            if found is not None and found.download_url:
                seen = True
                data = reader.read_new(found.download_url)
                if data:
                    sys.stdout.buffer.write(data)
                    sys.stdout.flush()
                    continue  # more may be waiting: read again before sleeping
            if state in ENDED:
                break
            time.sleep(interval)
    if not seen:
        raise CliError(f"job {job} ended ({state}) without {file_name} in {directory_id}/{path}")
    message(f"job {job} {state}")
