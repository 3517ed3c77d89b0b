"""The HTTP API: the Batch AI 2018-05-01 routes on FastAPI, served through AsgiFunctionApp.

Every route but /healthz authenticates (bearer token, fails closed) and requires
``api-version=2018-05-01``; bodies are limited to `MAX_BODY_BYTES`. Every error is an ARM error
body: our `ApiError`s with their status, request validation as 400, unknown routes as 404, and
anything unexpected as a logged 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.api import clusters, experiments, jobs, nodeagent, provider, scoring, workspaces
from functions.api.common import MAX_BODY_BYTES, settings, too_large
from shared.adapters import auth
from shared.domain import validation
from shared.domain.contract import API_VERSION
from shared.domain.errors import ApiError, unauthorized
from shared.domain.validation import field_path

log = logging.getLogger("batchai.api")

api = FastAPI(title="batchai", version=API_VERSION, docs_url=None, redoc_url=None, openapi_url=None)
OPEN_PATHS = frozenset({"/healthz", *nodeagent.PATHS})  # these authenticate their callers themselves


def arm_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


@api.middleware("http")
async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    if request.url.path in OPEN_PATHS:
        return await call_next(request)
    if not auth.token_ok(request.headers.get("authorization"), settings().token_sha256):
        return arm_error(unauthorized())
    try:
        validation.check_arm_path(request.scope["path"])  # before anything reads storage with its ids
    except ApiError as e:
        return arm_error(e)
    version = request.query_params.get("api-version")
    if version != API_VERSION:
        shown = "missing" if version is None else f"'{version}'"
        return arm_error(ApiError(400, "InvalidApiVersionParameter",
                                  f"The api-version is {shown}; the supported version is '{API_VERSION}'.",
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


for module in (provider, workspaces, experiments, clusters, jobs, scoring, nodeagent):
    api.include_router(module.router)
