"""The dashboard's HTTP routes, served by the same Function app as the API (`with_dashboard`: paths under
/dashboard go to the dashboard, every other path to the API).

People sign in with OpenID Connect (`shared.dashboard.signin`) and hold a session cookie
(`shared.dashboard.sessions`); each request authenticates the session's access token exactly as the API
authenticates a bearer token, and each route's rule (`functions.api.access.DASHBOARD_RULES`: the API's
actions and scopes) is checked before it runs; lists are filtered by `shared.dashboard.views`. Changes
(terminate, delete, sign out) are POSTs that must carry the session's CSRF token (header X-CSRF-Token,
which the pages' htmx sends, or a `csrf` form field) and must not come from another site.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from functions.api import access as rules
from functions.api.common import job_ref, settings, workspace_ref
from functions.api.sweeps import sweep_ref
from shared.dashboard import pages, sessions, signin
from shared.domain.errors import ApiError
from shared.services import authorization
from shared.services.api_common import utcnow

PREFIX = rules.DASHBOARD
W = rules.DASHBOARD_WS
E = rules.DASHBOARD_EXP
J = rules.DASHBOARD_JOB
CALLBACK = f"{PREFIX}/auth/callback"
OPEN_PATHS = frozenset({PREFIX, f"{PREFIX}/signin", CALLBACK, f"{PREFIX}/signout", f"{PREFIX}/static/{{name}}"})

site = FastAPI(title="batchai dashboard", docs_url=None, redoc_url=None, openapi_url=None)
Asgi = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


def with_dashboard(api: Asgi) -> Asgi:
    """One ASGI app: /dashboard and below to the dashboard, everything else (lifespan included) to `api`."""
    async def app(scope: dict[str, Any], receive: Callable[..., Awaitable[Any]],
                  send: Callable[..., Awaitable[Any]]) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == PREFIX or path.startswith(PREFIX + "/")):
            await site(scope, receive, send)
        else:
            await api(scope, receive, send)
    return app


@site.middleware("http")
async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    for name, value in pages.SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _session_id(request: Request) -> str | None:
    return request.cookies.get(sessions.SESSION_COOKIE)


async def viewer(request: Request) -> pages.Viewer:
    """The signed-in principal, checked against the route's rule; a sign-in redirect when there is none."""
    conf = settings()
    session = await run_in_threadpool(sessions.load, conf, _session_id(request), utcnow())
    if session is None:
        raise pages.SignInNeeded()
    try:
        principal = await run_in_threadpool(authorization.authenticate, conf, f"Bearer {session.token}")
    except authorization.AuthError as refused:
        if refused.status != 401:
            raise
        await run_in_threadpool(sessions.end, conf, _session_id(request))  # e.g. the issuer's key changed
        raise pages.SignInNeeded() from None
    granted = authorization.Access(conf, principal)
    rule = rules.DASHBOARD_RULES.get((request.method, getattr(request.scope.get("route"), "path", "")))
    if rule is None:
        raise authorization.forbidden(principal, "(none)", request.url.path)
    scope = rule.scope_of(request.path_params)
    if scope is not None:
        await run_in_threadpool(granted.require, rule.action, scope)
    if request.method == "POST" and not await _csrf_ok(request, session):
        raise ApiError(403, "CsrfTokenInvalid", "This change did not come from a dashboard page; reload and retry.")
    return pages.Viewer(principal, granted, session.csrf)


async def _csrf_ok(request: Request, session: sessions.Session) -> bool:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    presented = request.headers.get(sessions.CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        presented = dict(parse_qsl((await request.body()).decode(errors="replace"))).get("csrf")
    return sessions.check_csrf(session, presented)


@site.exception_handler(pages.SignInNeeded)
async def to_sign_in(request: Request, _: pages.SignInNeeded) -> Response:
    target = f"{PREFIX}/signin?next={quote(request.url.path)}"
    if request.headers.get("hx-request"):  # a live fragment of a page whose session ended: reload into sign-in
        return Response(status_code=401, headers={"HX-Redirect": target})
    if request.method != "GET":
        return pages.error(request, 401, "Your session has ended: sign in again.")
    return RedirectResponse(target, status_code=303)


@site.exception_handler(ApiError)
async def on_error(request: Request, error: ApiError) -> Response:
    headers = error.headers if isinstance(error, authorization.AuthError) else None
    response = pages.error(request, error.status, error.message)
    if headers and error.status == 503:
        response.headers.update(headers)
    return response


# --- signing in and out ---------------------------------------------------------------------------

def _redirect_uri(request: Request) -> str:
    base = signin.DashboardSettings.from_env().public_url or str(request.base_url).rstrip("/")
    return base + CALLBACK


@site.get(PREFIX)
def root() -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=308)


@site.get(f"{PREFIX}/signin")
def sign_in(request: Request, next: str = f"{PREFIX}/") -> Response:  # noqa: A002 - the parameter's name
    conf, dash = settings(), signin.DashboardSettings.from_env()
    try:
        started = signin.start(conf, dash, _redirect_uri(request))
    except signin.SignInFailed as error:
        return pages.error(request, 503, str(error))
    binding = sessions.begin_login(conf, started.state, started.verifier, started.nonce, pages.safe_next(next),
                                   utcnow())
    response = RedirectResponse(started.url, status_code=303)
    response.set_cookie(sessions.LOGIN_COOKIE, binding, **sessions.cookie_options(sessions.LOGIN_LIFETIME_S))
    return response


@site.get(CALLBACK)
def signed_in(request: Request, state: str = "", code: str = "", error: str = "",
              error_description: str = "") -> Response:
    conf, dash, now = settings(), signin.DashboardSettings.from_env(), utcnow()
    pending = sessions.take_login(conf, state, request.cookies.get(sessions.LOGIN_COOKIE), now)
    if error or pending is None or not code:
        why = f"{error}: {error_description}" if error else "this sign-in was not started here, or it took too long"
        return pages.error(request, 400, f"Sign-in failed ({why[:300]}).", retry=True)
    try:
        done = signin.finish(conf, dash, _redirect_uri(request), code, pending.verifier, pending.nonce)
    except signin.SignInFailed as failure:
        return pages.error(request, 400, f"Sign-in failed: {failure}", retry=True)
    session_id, session = sessions.create(conf, done.access_token, done.principal.name, done.expires_at, now)
    response = RedirectResponse(pending.next_path, status_code=303)
    left = max(60, int(session.expires.timestamp() - now.timestamp()))
    response.set_cookie(sessions.SESSION_COOKIE, session_id, **sessions.cookie_options(left))
    response.delete_cookie(sessions.LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@site.post(f"{PREFIX}/signout")
async def sign_out(request: Request) -> Response:
    conf = settings()
    session = await run_in_threadpool(sessions.load, conf, _session_id(request), utcnow())
    if session is not None:
        if not await _csrf_ok(request, session):
            return pages.error(request, 403, "This sign-out did not come from a dashboard page.")
        await run_in_threadpool(sessions.end, conf, _session_id(request))
    response = pages.signed_out(request)
    response.delete_cookie(sessions.SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@site.get(f"{PREFIX}/static/{{name}}")
def static(name: str) -> Response:
    return pages.static_file(name)


# --- pages ------------------------------------------------------------------------------------------

Viewer = pages.Viewer
Signed = Depends(viewer)


@site.get(f"{PREFIX}/")
def home(request: Request, v: Viewer = Signed) -> HTMLResponse:
    return pages.home(request, v, settings())


@site.get(W)
def workspace(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
              v: Viewer = Signed) -> HTMLResponse:
    return pages.workspace(request, v, settings(), workspace_ref(subscriptionId, resourceGroupName, workspaceName))


@site.get(f"{W}/clusters")
def clusters(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
             v: Viewer = Signed) -> HTMLResponse:
    return pages.clusters(request, v, settings(), workspace_ref(subscriptionId, resourceGroupName, workspaceName))


@site.get(f"{W}/runs")
def runs(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
         v: Viewer = Signed) -> HTMLResponse:
    return pages.runs(request, v, settings(), workspace_ref(subscriptionId, resourceGroupName, workspaceName))


@site.get(E)
def experiment(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
               experimentName: str, v: Viewer = Signed) -> HTMLResponse:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return pages.experiment(request, v, settings(), ws.experiment(experimentName), fragment=False)


@site.get(f"{E}/jobs")
def experiment_jobs(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                    experimentName: str, v: Viewer = Signed) -> HTMLResponse:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return pages.experiment(request, v, settings(), ws.experiment(experimentName), fragment=True)


@site.get(rules.DASHBOARD_SWEEP)
def sweep(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str, experimentName: str,
          sweepName: str, v: Viewer = Signed) -> HTMLResponse:
    ref = sweep_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, sweepName)
    return pages.sweep(request, v, settings(), ref, fragment=False)


@site.get(f"{rules.DASHBOARD_SWEEP}/status")
def sweep_status(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                 experimentName: str, sweepName: str, v: Viewer = Signed) -> HTMLResponse:
    ref = sweep_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, sweepName)
    return pages.sweep(request, v, settings(), ref, fragment=True)


def _job(subscriptionId: str, resourceGroupName: str, workspaceName: str, experimentName: str,  # noqa: N803
         jobName: str) -> Any:
    return job_ref(subscriptionId, resourceGroupName, workspaceName, experimentName, jobName)


JobRefDep = Depends(_job)


@site.get(J)
def job(request: Request, v: Viewer = Signed, ref: Any = JobRefDep) -> HTMLResponse:
    return pages.job(request, v, settings(), ref)


@site.get(f"{J}/status")
def job_status(request: Request, v: Viewer = Signed, ref: Any = JobRefDep) -> HTMLResponse:
    return pages.job_status(request, v, settings(), ref)


@site.get(f"{J}/log")
def job_log(request: Request, file: str = "stdout.txt", v: Viewer = Signed, ref: Any = JobRefDep
            ) -> HTMLResponse:
    return pages.job_log(request, v, settings(), ref, file)


@site.get(f"{J}/metrics")
def job_metrics(request: Request, v: Viewer = Signed, ref: Any = JobRefDep) -> HTMLResponse:
    return pages.job_metrics(request, v, settings(), ref)


@site.get(f"{J}/files")
def job_files(request: Request, v: Viewer = Signed, ref: Any = JobRefDep) -> HTMLResponse:
    return pages.job_files(request, v, settings(), ref)


@site.get(f"{J}/download")
def download(directory: str, path: str, v: Viewer = Signed, ref: Any = JobRefDep) -> Response:
    return pages.download(settings(), ref, directory, path)


@site.post(f"{J}/terminate")
def terminate(request: Request, v: Viewer = Signed, ref: Any = JobRefDep) -> Response:
    return pages.terminate(request, v, settings(), ref)


@site.post(f"{J}/delete")
def delete(request: Request, v: Viewer = Signed, ref: Any = JobRefDep) -> Response:
    return pages.delete(request, v, settings(), ref)
