"""The node API of the service, as the agent calls it: its credentials, its blobs and its events
(machines), and the documents its queue messages name (every node).

The caller proves which node it is with a bearer token: a machine's IMDS token for the node
audience, or a process node's node token. Transient failures (transport errors, 5xx, 429, a 401 of
a token that expired on the way) raise `TransientError`; any other refusal raises `NodeApiRefused`.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from shared.agent.retry import TRANSIENT_STATUS, TransientError
from shared.domain.messages import AssignedTask, Assignment, NodeSetup


class NodeApiRefused(Exception):
    """The node API said no (permanent: this node may not have what it asked for)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class NodeApi:
    def __init__(self, service_url: str, cluster_key: str, node_id: str, token: Callable[[], str],
                 token_refused: Callable[[], None] = lambda: None, timeout_s: float = 30.0,
                 ca_file: str = "") -> None:
        self.cluster_key = cluster_key
        self.node_id = node_id
        self.token = token
        self.token_refused = token_refused
        # No CA file: the system CA store (on machines, SSL_CERT_FILE in the agent's environment names it)
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._http = httpx.Client(base_url=service_url.rstrip("/"), timeout=timeout_s, verify=verify)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token()}"}
        try:
            response = self._http.post(path, json={"clusterKey": self.cluster_key, "nodeId": self.node_id, **body},
                                       headers=headers)
        except httpx.TransportError as error:
            raise TransientError(f"{path}: {type(error).__name__}: {error}") from error
        if response.status_code in TRANSIENT_STATUS:
            raise TransientError(f"{path}: HTTP {response.status_code}")
        if response.status_code == 401:  # e.g. a token that expired on the way: ask IMDS for a new one
            self.token_refused()
            raise TransientError(f"{path}: HTTP 401: {response.text[:500]}")
        if response.status_code != 200:
            raise NodeApiRefused(response.status_code, response.text)
        document: dict[str, Any] = response.json()
        return document

    def close(self) -> None:
        self._http.close()

    def credentials(self) -> dict[str, Any]:
        return self._post("/nodeagent/credentials", {})

    def blobs(self, assignment_id: str | None, names: Sequence[str]) -> dict[str, Any]:
        return self._post("/nodeagent/blobs", {"assignmentId": assignment_id, "names": list(names)})

    def event(self, event: dict[str, Any]) -> None:
        """Send one of this node's events (the service puts it on the events queue)."""
        self._post("/nodeagent/events", {"event": event})

    def assignment(self, message: Assignment) -> AssignedTask:
        """The task an ``assign`` message names; NodeApiRefused when this node does not hold it (now)."""
        return AssignedTask.from_dict(self._post("/nodeagent/assignment", {
            "assignmentId": message.assignment_id, "jobKey": message.job_key, "taskIndex": message.task_index,
            "attempt": message.attempt}))

    def setup(self) -> NodeSetup:
        """What this node sets up to join its cluster; NodeApiRefused when it is not joining it."""
        return NodeSetup.from_dict(self._post("/nodeagent/setup", {}))

    def exec_command(self, exec_id: str) -> dict[str, Any]:
        """The command of a node exec request (execId, command, jobKey, timeoutSeconds); NodeApiRefused when
        it is not this node's or has been answered."""
        return self._post("/nodeagent/exec", {"execId": exec_id})

    def exec_result(self, exec_id: str, result: dict[str, Any]) -> None:
        """Answer a node exec request: exitCode, stdout, stderr (or error)."""
        self._post("/nodeagent/exec-result", {"execId": exec_id, **result})
