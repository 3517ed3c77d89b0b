"""The HTTP API: the Batch AI 2018-05-01 routes on FastAPI, served through AsgiFunctionApp.

Every route but /healthz and the nodes' own routes authenticates its caller (an Entra ID bearer JWT:
`shared.services.authorization`; fails closed), requires its api-version (``2018-05-01``; the
role routes ``2022-04-01``, as Microsoft.Authorization) and checks the caller's role for the route's
action (`functions.api.access`); bodies are limited to `MAX_BODY_BYTES`. Every error is an ARM error
body: our `ApiError`s with their status (and headers: the 401 challenge), request validation as 400,
unknown routes as 404, and anything unexpected as a logged 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.api import (
    access,
    clusters,
    experiments,
    jobs,
    join_tokens,
    metrics,
    node_exec,
    nodeagent,
    provider,
    roles,
    scoring,
    sweeps,
    workspaces,
)
from functions.api.common import MAX_BODY_BYTES, settings, too_large
from shared import telemetry
from shared.domain import validation
from shared.domain.contract import API_VERSION
from shared.domain.errors import ApiError
from shared.domain.validation import field_path
from shared.ports.contract import BadToken
from shared.services import authorization

log = logging.getLogger("batchai.api")

telemetry.configure("host")  # before the first request: FastAPI's own spans (W3C traceparent accepted) are recorded
api = FastAPI(title="batchai", version=API_VERSION, docs_url=None, redoc_url=None, openapi_url=None)
OPEN_PATHS = frozenset({"/healthz", *nodeagent.PATHS})  # these authenticate their callers themselves


def arm_error(error: ApiError) -> JSONResponse:
    headers = error.headers if isinstance(error, authorization.AuthError) else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def api_version_of(path: str) -> str:
    return roles.API_VERSION if "/providers/microsoft.authorization/" in path.lower() else API_VERSION


@api.middleware("http")
async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    if request.url.path in OPEN_PATHS:
        return await call_next(request)
    try:
        # Blocking: the first validation fetches the issuer's keys.
        request.state.principal = await run_in_threadpool(authorization.authenticate, settings(),
                                                          request.headers.get("authorization"))
        validation.check_arm_path(request.scope["path"])  # before anything reads storage with its ids
    except ApiError as e:
        return arm_error(e)
    version, expected = request.query_params.get("api-version"), api_version_of(request.url.path)
    if version != expected:
        shown = "missing" if version is None else f"'{version}'"
        return arm_error(ApiError(400, "InvalidApiVersionParameter",
                                  f"The api-version is {shown}; the supported version is '{expected}'.",
                                  "api-version"))
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        return arm_error(too_large(int(length)))
    try:
        return await call_next(request)
    except ApiError as e:
        return arm_error(e)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return arm_error(ApiError(500, "InternalServerError", "The service could not complete the request."))


@api.exception_handler(ApiError)
async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return arm_error(exc)


@api.exception_handler(BadToken)
async def on_bad_token(request: Request, exc: BadToken) -> JSONResponse:
    return arm_error(ApiError(400, "InvalidParameter", "The parameter '$skiptoken' is not a valid continuation token.",
                              "$skiptoken"))


@api.exception_handler(RequestValidationError)
async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [p for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    target = field_path(loc) or "request"
    return arm_error(ApiError(400, "InvalidRequestContent", f"Invalid value for '{target}': {first.get('msg')}.",
                              target))


@api.exception_handler(StarletteHTTPException)
async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "NotFound", 405: "MethodNotAllowed"}
    message = "No such route." if exc.status_code == 404 else str(exc.detail)
    return arm_error(ApiError(exc.status_code, codes.get(exc.status_code, "HttpError"), message))


@api.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


for module in (provider, workspaces, experiments, clusters, jobs, metrics, scoring, roles, node_exec, sweeps,
               join_tokens):
    api.include_router(module.router, dependencies=[Depends(access.authorize)])
api.include_router(nodeagent.router)
