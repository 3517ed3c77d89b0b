"""Requests that azure-mgmt-batchai 7.0.0 has no method for, sent through the SDK client's own pipeline
(its credential, retries, ARM error mapping and long-running operation polling): file server get and
delete (in the 2018-05-01 contract, absent from that SDK), a cluster's node setup task output
(listNodeSetupFiles, the service's addition beyond 2018-05-01), and creates whose body carries
properties the SDK's models lack (the service's additions: a cluster's packing, a job's GPUs per node).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, map_error
from azure.core.pipeline import PipelineResponse
from azure.core.polling import LROPoller, NoPolling
from azure.core.rest import HttpRequest
from azure.mgmt.batchai import BatchAI, models
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.core.tools import parse_resource_id

from shared.cli.context import CliError
from shared.domain.contract import API_VERSION

ERRORS = {401: ClientAuthenticationError, 404: ResourceNotFoundError}


def _send(client: BatchAI, method: str, path: str, ok: tuple[int, ...],
          params: dict[str, Any] | None = None) -> PipelineResponse:
    """`path` gets the api-version and `params`; a nextLink (params None) is sent as it came."""
    query = None if params is None else {"api-version": API_VERSION, **{k: str(v) for k, v in params.items()}}
    url = client._client.format_url(path)
    response = client._client.send_request(HttpRequest(method, url, params=query), _return_pipeline_response=True)
    http = response.http_response
    if http.status_code not in ok:
        map_error(status_code=http.status_code, response=http, error_map=ERRORS)
        raise HttpResponseError(response=http, error_format=ARMErrorFormat)
    return response


def workspace_path(client: BatchAI, group: str, workspace: str) -> str:
    return (f"/subscriptions/{client._config.subscription_id}/resourceGroups/{group}"
            f"/providers/Microsoft.BatchAI/workspaces/{workspace}")


def get_file_server(client: BatchAI, group: str, workspace: str, name: str) -> models.FileServer:
    response = _send(client, "GET", f"{workspace_path(client, group, workspace)}/fileServers/{name}", (200,), {})
    return client._deserialize("FileServer", response)


def begin_delete_file_server(client: BatchAI, group: str, workspace: str, name: str,
                             wait: bool = True, interval: float = 1.0) -> LROPoller[None]:
    response = _send(client, "DELETE", f"{workspace_path(client, group, workspace)}/fileServers/{name}",
                     (200, 202, 204), {})
    polling = ARMPolling(interval) if wait else NoPolling()
    return LROPoller(client._client, response, lambda _: None, polling)


def list_node_setup_files(client: BatchAI, group: str, workspace: str, cluster: str, directory: str = ".",
                          expiry_minutes: int = 60) -> Iterator[models.File]:
    """Every entry of one directory of the setup task output (a node id, or a path under one; "." lists nodes)."""
    path: str | None = f"{workspace_path(client, group, workspace)}/clusters/{cluster}/listNodeSetupFiles"
    params: dict[str, Any] | None = {"directory": directory, "linkexpiryinminutes": expiry_minutes}
    method = "POST"
    while path:
        page = client._deserialize("FileListResult", _send(client, method, path, (200,), params))
        yield from page.value or []
        path, method, params = page.next_link, "GET", None


def file_server_id(client: BatchAI, group: str, workspace: str, name_or_id: str) -> str:
    """The ARM id of a file server named in the workspace, or given by its id (checked: it must exist)."""
    if name_or_id.startswith("/"):
        parts = parse_resource_id(name_or_id)
        if parts.get("resource_type", "").lower() != "fileservers" or "resource_group" not in parts:
            raise CliError(f"{name_or_id!r} is not the ARM id of a file server")
        group, workspace, name_or_id = parts["resource_group"], parts["name"], parts["resource_name"]
    return str(get_file_server(client, group, workspace, name_or_id).id)


def properties_hook(extra: dict[str, Any]) -> Callable[[Any], None]:
    """A request hook for the SDK's own pipeline that adds `extra` (the service's additions beyond
    2018-05-01, which the SDK's models cannot hold) to a PUT body's properties."""
    def hook(request: Any) -> None:
        http = request.http_request
        if http.method != "PUT" or not extra:
            return
        body = json.loads(http.body)
        body.setdefault("properties", {}).update(extra)
        http.set_json_body(body)
    return hook


def as_sent(pipeline_response: Any, deserialized: Any, headers: Any) -> dict[str, Any]:
    """The SDK's `cls` for a GET whose additions should show: the resource as the service sent it (the
    SDK's models drop what 2018-05-01 does not define: packing, nodeSource, array, dependsOn...)."""
    return dict(json.loads(pipeline_response.http_response.text()))
