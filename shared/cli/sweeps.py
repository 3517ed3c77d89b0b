"""`batchai sweep ...`: parameter sweeps (create from a JSON or YAML file, show, list, cancel). Sweeps are an
addition beyond 2018-05-01 that the SDK does not know: requests go through the SDK client's own pipeline
(`shared.cli.arm`), with its credential, retries and ARM errors.

The file is a sweep body (``{"properties": {...}}`` or its properties): jobTemplate (a job file's
properties), parameterSpace, sampling, primaryMetric, budget, earlyTermination. `--cluster` sets the
template's cluster by name or ARM id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from azure.core.rest import HttpRequest

from shared.cli.arm import _send, workspace_path
from shared.cli.common import GroupOpt, OutputOpt, output_format, session
from shared.cli.context import CliError, Session
from shared.cli.jobs import ExperimentArg, ExperimentOpt, WorkspaceArg, WorkspaceOpt, cluster_arm_id, names
from shared.cli.output import out, print_json
from shared.domain.contract import API_VERSION

app = typer.Typer(help="Parameter sweeps: one job template run over sampled parameters, with early termination.",
                  no_args_is_help=True)

NameArg = Annotated[str | None, typer.Argument(help="Sweep name (or -n).", show_default=False)]
NameOpt = Annotated[str | None, typer.Option("--name", "-n", help="Sweep name.")]
ENDED = ("succeeded", "failed", "canceled")


def _path(s: Session, group: str | None, ws: str, exp: str, name: str = "") -> str:
    base = f"{workspace_path(s.client, s.resource_group(group), ws)}/experiments/{exp}/sweeps"
    return f"{base}/{name}" if name else base


def read_sweep_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise CliError(f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold an object, not {type(data).__name__}")
    return data if isinstance(data.get("properties"), dict) else {"properties": data}


def _put(s: Session, path: str, body: dict[str, Any]) -> dict[str, Any]:
    client = s.client
    request = HttpRequest("PUT", client._client.format_url(path), params={"api-version": API_VERSION}, json=body)
    response = client._client.send_request(request)
    if response.status_code not in (200, 201):
        try:
            error = response.json()["error"]
        except (ValueError, KeyError):
            raise CliError(f"HTTP {response.status_code}: {response.text()[:300]}") from None
        where = f" (at {error['target']})" if error.get("target") else ""
        raise CliError(f"{error['code']}: {error['message']}{where}")
    return dict(response.json())


def _get(s: Session, path: str, method: str = "GET") -> dict[str, Any]:
    return dict(_send(s.client, method, path, (200,), {}).http_response.json())


@app.command("create")
def create(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None, name: NameArg = None,
           file: Annotated[Path, typer.Option("--file", "-f", help="The sweep file (JSON or YAML).")] = Path(),
           cluster: Annotated[str | None, typer.Option("--cluster", "-c", help="Cluster name or ARM id for "
                                                                                 "the job template.")] = None,
           workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, name_opt: NameOpt = None,
           group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Create a sweep from a file; it starts at once (the service creates its jobs)."""
    s = session(ctx)
    ws, exp, sweep = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt,
                           "--name/-n")
    if file == Path():
        raise CliError("give the sweep file with --file/-f")
    body = read_sweep_file(file)
    template = body["properties"].get("jobTemplate")
    if cluster:
        if not isinstance(template, dict):
            raise CliError(f"{file}: no jobTemplate to set the cluster of")
        props = template["properties"] if isinstance(template.get("properties"), dict) else template
        props["cluster"] = {"id": cluster_arm_id(s, s.resource_group(group), ws, cluster)}
    created = _put(s, _path(s, group, ws, exp, sweep), body)
    _show(ctx, created, output)


@app.command("show")
def show(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None, name: NameArg = None,
         workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, name_opt: NameOpt = None,
         group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Show a sweep: state, budget, best run and its metric, and every run with its parameters."""
    s = session(ctx)
    ws, exp, sweep = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt)
    _show(ctx, _get(s, _path(s, group, ws, exp, sweep)), output)


@app.command("cancel")
def cancel(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None, name: NameArg = None,
           workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, name_opt: NameOpt = None,
           group: GroupOpt = None, output: OutputOpt = None) -> None:
    """Cancel a sweep: no more runs are created and the running ones are stopped."""
    s = session(ctx)
    ws, exp, sweep = names(workspace, workspace_opt, experiment, experiment_opt, name, name_opt)
    _show(ctx, _get(s, _path(s, group, ws, exp, sweep) + "/cancel", "POST"), output)


@app.command("list")
def list_(ctx: typer.Context, workspace: WorkspaceArg = None, experiment: ExperimentArg = None,
          workspace_opt: WorkspaceOpt = None, experiment_opt: ExperimentOpt = None, group: GroupOpt = None,
          output: OutputOpt = None) -> None:
    """List the experiment's sweeps with their state and best run."""
    s = session(ctx)
    ws, exp, _ = names(workspace, workspace_opt, experiment, experiment_opt, flag="")
    items = _get(s, _path(s, group, ws, exp))["value"]
    if output_format(ctx, output) == "json":
        print_json(items)
        return
    from rich.table import Table

    table = Table(title=f"Sweeps of {exp}")
    for header in ("Name", "State", "Runs", "Best run", "Metric", "Created"):
        table.add_column(header, overflow="fold")
    for item in items:
        p = item["properties"]
        best = p.get("bestRun") or {}
        table.add_row(item["name"], p["state"], f"{len(p['runs'])}/{p['budget']['maxTotalRuns']}",
                      best.get("name", ""), _metric(p), p["creationTime"])
    out().print(table)


def _metric(p: dict[str, Any]) -> str:
    best = p.get("bestRun")
    return f"{p['primaryMetric']['name']} = {best['value']}" if best else ""


def _show(ctx: typer.Context, sweep: dict[str, Any], output: str | None) -> None:
    if output_format(ctx, output) == "json":
        print_json(sweep)
        return
    p = sweep["properties"]
    best = p.get("bestRun")
    policy = p.get("earlyTermination") or {}
    lines = [("name", sweep["name"]), ("state", p["state"]), ("reason", p.get("stateReason") or ""),
             ("metric", f"{p['primaryMetric']['name']} ({p['primaryMetric']['goal']})"),
             ("sampling", json.dumps(p["sampling"])),
             ("budget", f"{len(p['runs'])} of {p['budget']['maxTotalRuns']} runs, at most "
                        f"{p['budget']['maxConcurrentRuns']} at once"),
             ("policy", json.dumps(policy) if policy else "none"),
             ("best run", f"{best['name']} ({_metric(p)})" if best else "none yet")]
    for error in p.get("errors") or []:
        lines.append(("error", f"{error['code']}: {error['message']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")
    from rich.table import Table

    table = Table(title="Runs")
    for header in ("Job", "State", "Parameters", p["primaryMetric"]["name"], "Reports", "Stopped by the policy"):
        table.add_column(header, overflow="fold")
    for run in p["runs"]:
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in run["parameters"].items())
        metric = run.get("metric")
        table.add_row(run["job"], run["state"], params, "" if metric is None else f"{metric:.4f}",
                      str(run.get("reports", 0)), run.get("earlyTerminated") or run.get("stopReason") or "")
    out().print(table)
