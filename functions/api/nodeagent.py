"""Node API routes: nodes get their scoped SAS and send their events (machines), fetch what their
queue messages name (every node) and answer the commands they were sent to run (node exec) here;
machines join bring-your-own clusters here with a join token (`join`, then `node` until registered).

These routes authenticate their callers themselves (a machine's IMDS token, a node token or a join token, not the
API's bearer token) and take no api-version: they are the service's own API for its nodes, not
Batch AI's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from functions.api.common import JsonBody, settings
from shared.services import join_tokens, node_credentials, node_exec, node_payloads
from shared.services.api_common import utcnow

router = APIRouter()
CREDENTIALS = "/nodeagent/credentials"
BLOBS = "/nodeagent/blobs"
ASSIGNMENT = "/nodeagent/assignment"
SETUP = "/nodeagent/setup"
EVENTS = "/nodeagent/events"
EXEC = "/nodeagent/exec"
EXEC_RESULT = "/nodeagent/exec-result"
JOIN = "/nodeagent/join"  # a machine exchanges a join token for its node credential (bring your own)
NODE = "/nodeagent/node"  # a node's own state (`batchai node join` waits for its registration)
PATHS = frozenset({CREDENTIALS, BLOBS, ASSIGNMENT, SETUP, EVENTS, EXEC, EXEC_RESULT, JOIN, NODE})


@router.post(CREDENTIALS)
def credentials(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_credentials.credentials(settings(), request.headers.get("authorization"), body, utcnow())


@router.post(BLOBS)
def blobs(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_credentials.blobs(settings(), request.headers.get("authorization"), body, utcnow())


@router.post(ASSIGNMENT)
def assignment(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_payloads.assignment(settings(), request.headers.get("authorization"), body)


@router.post(SETUP)
def setup(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_payloads.setup(settings(), request.headers.get("authorization"), body)


@router.post(EVENTS)
def events(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_credentials.post_event(settings(), request.headers.get("authorization"), body)


@router.post(EXEC)
def exec_command(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_exec.payload(settings(), request.headers.get("authorization"), body)


@router.post(EXEC_RESULT)
def exec_result(request: Request, body: JsonBody) -> dict[str, Any]:
    return node_exec.answer(settings(), request.headers.get("authorization"), body, utcnow())


@router.post(JOIN)
def join(request: Request, body: JsonBody) -> dict[str, Any]:
    return join_tokens.join(settings(), request.headers.get("authorization"), body, utcnow())


@router.post(NODE)
def node(request: Request, body: JsonBody) -> dict[str, Any]:
    return join_tokens.node_state(settings(), request.headers.get("authorization"), body)
