"""The dashboard's pages and live fragments: views rendered with the Jinja2 templates beside this module.

Pages load their live parts as htmx fragments that poll while the thing they show can still change
(a fragment of a job that ended is rendered without its polling trigger, so the browser stops asking).
Every response carries a strict Content-Security-Policy: scripts and styles come only from this
dashboard's own static files (htmx is vendored: static/README.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from shared.adapters import output_blobs, storage
from shared.config import Settings
from shared.dashboard import charts, outputs, views
from shared.dashboard import sweeps as sweep_pages
from shared.domain import rbac
from shared.domain.errors import not_found
from shared.domain.keys import ExperimentRef, JobRef, WorkspaceRef
from shared.domain.principals import Principal
from shared.services import authorization, jobs, metrics, removal, sweeps
from shared.services.api_common import Accepted, utcnow
from shared.services.authorization import Access

HERE = Path(__file__).parent
STATIC = HERE / "static"
PREFIX = "/dashboard"
HTMX = "htmx-2.0.11.min.js"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                               "form-action 'self'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_PROVIDER = re.compile(r"/providers/Microsoft\.BatchAI(?=/)", re.IGNORECASE)


class SignInNeeded(Exception):
    """No live session: the person must sign in (again)."""


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    access: Access
    csrf: str


def page_url(arm_id: str, *tail: str) -> str:
    """The dashboard page of a Batch AI resource: its ARM id without the provider segment, under /dashboard."""
    path = _PROVIDER.sub("", arm_id)
    return PREFIX + quote(path) + "".join(f"/{quote(t)}" for t in tail)


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(page_url=page_url, PREFIX=PREFIX, HTMX=HTMX)


def render(request: Request, name: str, status: int = 200, viewer: Viewer | None = None,
           **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"viewer": viewer, **context}, status_code=status)


def error(request: Request, status: int, message: str, retry: bool = False) -> HTMLResponse:
    return render(request, "error.html", status, message=message, code=status, retry=retry)


def signed_out(request: Request) -> HTMLResponse:
    return render(request, "signed_out.html")


def static_file(name: str) -> Response:
    path = STATIC / name
    if name.startswith(".") or "/" in name or not path.is_file() or path.suffix not in (".js", ".css"):
        raise not_found("file", name)
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


def safe_next(path: str) -> str:
    """A page of this dashboard to return to after signing in (anything else: the home page)."""
    ok = path.startswith(PREFIX + "/") and not path.startswith("//") and "\\" not in path and "//" not in path
    return path if ok and all(c.isprintable() and c != " " for c in path) else PREFIX + "/"


# --- pages ----------------------------------------------------------------------------------------

def home(request: Request, v: Viewer, conf: Settings) -> HTMLResponse:
    return render(request, "home.html", viewer=v, view=views.home(conf, v.access))


def workspace(request: Request, v: Viewer, conf: Settings, ref: WorkspaceRef) -> HTMLResponse:
    shown = views.workspace(conf, v.access, ref)
    return render(request, "workspace.html", viewer=v, ref=ref, **shown,
                  show_clusters=v.access.allowed(rbac.CLUSTERS_READ, ref.arm_id),
                  show_runs=v.access.allowed(rbac.SCORING_RUNS_READ, ref.arm_id))


def clusters(request: Request, v: Viewer, conf: Settings, ref: WorkspaceRef) -> HTMLResponse:
    return render(request, "_clusters.html", viewer=v, ref=ref, cards=views.cluster_cards(conf, v.access, ref,
                                                                                          utcnow()))


def runs(request: Request, v: Viewer, conf: Settings, ref: WorkspaceRef) -> HTMLResponse:
    return render(request, "_runs.html", viewer=v, ref=ref, runs=views.scoring_runs(conf, v.access, ref))


def experiment(request: Request, v: Viewer, conf: Settings, ref: ExperimentRef, fragment: bool) -> HTMLResponse:
    listed = views.experiment_jobs(conf, v.access, ref, utcnow())
    found = [] if fragment else [s for s in sweeps.list_by_experiment(conf, ref, 100, None).items
                                 if v.access.allowed(rbac.SWEEPS_READ, s["id"])]
    return render(request, "_jobs.html" if fragment else "experiment.html", viewer=v, ref=ref, jobs=listed,
                  sweeps=found)


def sweep(request: Request, v: Viewer, conf: Settings, ref: sweeps.SweepRef, fragment: bool) -> HTMLResponse:
    body = sweeps.get(conf, ref).body
    live = body["properties"]["state"] not in ("succeeded", "failed", "canceled")
    return render(request, "_sweep.html" if fragment else "sweep.html", viewer=v, ref=ref, sweep=body, live=live,
                  plot=sweep_pages.metric_vs_run(body), params=sweep_pages.parameters_text)


def job(request: Request, v: Viewer, conf: Settings, ref: JobRef) -> HTMLResponse:
    return render(request, "job.html", viewer=v, ref=ref, view=views.job(conf, v.access, ref, utcnow()))


def job_status(request: Request, v: Viewer, conf: Settings, ref: JobRef) -> HTMLResponse:
    view = views.job(conf, v.access, ref, utcnow())
    return render(request, "_job_status.html", viewer=v, ref=ref, view=view, live=not views.ended(view.job))


def job_log(request: Request, v: Viewer, conf: Settings, ref: JobRef, file: str) -> HTMLResponse:
    live = not views.ended(jobs.get(conf, ref).body)
    return render(request, "_log.html", viewer=v, ref=ref, files=outputs.log_files(conf, ref),
                  tail=outputs.tail(conf, ref, file), live=live)


def job_metrics(request: Request, v: Viewer, conf: Settings, ref: JobRef) -> HTMLResponse:
    live = not views.ended(jobs.get(conf, ref).body)
    series = [s.render() for s in metrics.job_metrics(conf, ref)]
    return render(request, "_metrics.html", viewer=v, ref=ref, charts=charts.metric_charts(series), live=live)


def job_files(request: Request, v: Viewer, conf: Settings, ref: JobRef) -> HTMLResponse:
    live = not views.ended(jobs.get(conf, ref).body)
    found = outputs.files(conf, ref)
    links = {(f.directory, f.path): page_url(ref.arm_id, "download") + "?" + urlencode(
        {"directory": f.directory, "path": f.path}) for f in found}
    return render(request, "_files.html", viewer=v, ref=ref, files=found, links=links, live=live)


def download(conf: Settings, ref: JobRef, directory: str, path: str) -> Response:
    """The file: a redirect to a short read-only SAS URL where storage is https (Azure), else its bytes from
    here (the local stack's storage is plain http, which a browser will not download from an https page)."""
    name = outputs.blob_name(conf, ref, directory, path)
    url = output_blobs.read_url(conf.storage_connection_string, storage.C_OUTPUTS, name, utcnow() + timedelta(
        minutes=5))
    if url.startswith("https://"):
        return RedirectResponse(url, status_code=302)
    data = storage.container(conf.storage_connection_string, storage.C_OUTPUTS).download_blob(name).readall()
    filename = name.rsplit("/", 1)[-1]
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


def _after_change(request: Request, v: Viewer, conf: Settings, result: Accepted, target: str) -> Response:
    if result.op_id is not None:
        authorization.bind_operation(conf, result.op_id, v.principal)  # the operation is the user's, as via the API
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def terminate(request: Request, v: Viewer, conf: Settings, ref: JobRef) -> Response:
    return _after_change(request, v, conf, jobs.terminate(conf, ref), page_url(ref.arm_id))


def delete(request: Request, v: Viewer, conf: Settings, ref: JobRef) -> Response:
    return _after_change(request, v, conf, removal.delete_job(conf, ref), page_url(ref.experiment.arm_id))
