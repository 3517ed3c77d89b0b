"""`batchai scoring ...`: batch-scoring runs (list, show with a progress display, --watch) and the
queue submissions that were refused. These routes are additions to 2018-05-01 that the SDK does not
know, so they are read over HTTPS with the endpoint's token."""

from __future__ import annotations

import ssl
import time
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from shared.cli.common import GroupOpt, OutputOpt, output_format, session
from shared.cli.context import CliError, Session
from shared.cli.output import out, print_json

app = typer.Typer(help="Batch-scoring runs (started by manifests in batchai-triggers) and refused submissions.",
                  no_args_is_help=True)

WorkspaceArg = Annotated[str, typer.Argument(help="Workspace name.")]
ENDED = ("succeeded", "failed")


def _get(s: Session, path: str) -> dict[str, Any]:
    ep = s.endpoint
    verify: Any = ssl.create_default_context(cafile=ep["ca_file"]) if ep.get("ca_file") else True
    r = httpx.get(f"{ep['url'].rstrip('/')}{path}", params={"api-version": "2018-05-01"}, verify=verify,
                  headers={"Authorization": f"Bearer {ep['token']}"}, timeout=30)
    if r.status_code != 200:
        try:
            error = r.json()["error"]
            raise CliError(f"{error['code']}: {error['message']}")
        except (ValueError, KeyError):
            raise CliError(f"HTTP {r.status_code}: {r.text[:300]}") from None
    return r.json()


def _runs_path(s: Session, group: str | None, workspace: str) -> str:
    return f"{s.arm_prefix(s.resource_group(group))}/workspaces/{workspace}/batchScoringRuns"


def _counts(run: dict[str, Any]) -> str:
    p = run["properties"]["progress"]
    items, jobs = p["items"], p["jobs"]
    return (f"{items['succeeded']}/{items['total']} items ok, {items['failed']} failed; "
            f"{jobs['succeeded'] + jobs['failed']}/{jobs['total']} jobs done, {jobs['running']} running")


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg, group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the workspace's scoring runs with their state and progress."""
    s = session(ctx)
    runs = _get(s, _runs_path(s, group, workspace))["value"]
    if output_format(ctx, output) == "json":
        print_json(runs)
        return
    from rich.table import Table

    table = Table(title=f"Scoring runs in {workspace}")
    for header in ("Name", "State", "Progress", "Created", "Reason"):
        table.add_column(header, overflow="fold")
    for run in runs:
        p = run["properties"]
        table.add_row(run["name"], p["state"], _counts(run), p["creationTime"], p.get("stateReason") or "")
    out().print(table)


def _render(run: dict[str, Any], progress: Progress, tasks: dict[str, Any]) -> None:
    p = run["properties"]["progress"]
    for key, label in (("items", "items"), ("jobs", "jobs")):
        done = p[key]["succeeded"] + p[key]["failed"]
        if key not in tasks:
            tasks[key] = progress.add_task(label, total=max(p[key]["total"], 1), failed=0)
        progress.update(tasks[key], total=max(p[key]["total"], 1), completed=done, failed=p[key]["failed"])


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg, run: Annotated[str, typer.Argument(help="Run name.")],
         watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the run until it ends.")] = False,
         interval: Annotated[float, typer.Option(help="Seconds between polls with --watch.")] = 1.0,
         group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Show a run: state, reason, progress bars of items and jobs, summary blob and final job."""
    s = session(ctx)
    path = f"{_runs_path(s, group, workspace)}/{run}"
    body = _get(s, path)
    if output_format(ctx, output) == "json" and not watch:
        print_json(body)
        return
    progress = Progress(TextColumn("{task.description:<6}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("failed {task.fields[failed]}"), console=out(), transient=False)
    tasks: dict[str, Any] = {}
    with progress:
        _render(body, progress, tasks)
        while watch and body["properties"]["state"] not in ENDED:
            time.sleep(interval)
            body = _get(s, path)
            _render(body, progress, tasks)
    p = body["properties"]
    lines = [("name", body["name"]), ("state", p["state"]), ("reason", p.get("stateReason") or ""),
             ("created", p["creationTime"]), ("ended", p.get("endTime") or ""),
             ("manifest", f"{p['manifest']['container']}/{p['manifest']['blob']}"),
             ("progress", _counts(body))]
    if p.get("summary"):
        lines.append(("summary", f"{p['summary']['container']}/{p['summary']['blob']}"))
    if p.get("finalJob"):
        lines.append(("final job", f"{p['finalJob']['name']} ({p['finalJob']['state']})"))
    for error in p.get("errors") or []:
        lines.append(("error", f"{error['code']}: {error['message']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")
    if watch and p["state"] == "failed":
        raise typer.Exit(1)


@app.command("rejected")
def rejected(ctx: typer.Context, group: GroupOpt = None, output: OutputOpt = None) -> None:
    """List the queue submissions of the resource group that were refused, with the reason."""
    s = session(ctx)
    items = _get(s, f"{s.arm_prefix(s.resource_group(group))}/rejectedSubmissions")["value"]
    if output_format(ctx, output) == "json":
        print_json(items)
        return
    for item in items:
        p = item["properties"]
        job = "/".join(x for x in (p.get("workspace"), p.get("experiment"), p.get("jobName")) if x) or "-"
        typer.echo(f"{p['insertionTime']}  {job}  {p['code']}: {p['message']}")
    if not items:
        typer.echo("no rejected submissions")
