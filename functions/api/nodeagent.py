"""Node credentials routes: machines of the machine topology get their scoped SAS here.

These routes authenticate their callers themselves (a node's IMDS token, not the API's bearer
token) and take no api-version: they are the service's own API for its nodes, not Batch AI's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from functions.api.common import JsonBody, settings
from shared.services import node_credentials
from shared.services.api_common import utcnow

router = APIRouter()
CREDENTIALS = "/nodeagent/credentials"
BLOBS = "/nodeagent/blobs"
PATHS = frozenset({CREDENTIALS, BLOBS})


@router.post(CREDENTIALS)
def credentials(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_credentials.credentials(settings(), request.headers.get("authorization"), body, utcnow())


@router.post(BLOBS)
def blobs(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_credentials.blobs(settings(), request.headers.get("authorization"), body, utcnow())
