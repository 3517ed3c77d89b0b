"""Clusters and file servers routes: create, update, delete, get, list, listRemoteLoginInformation, and
listNodeSetupFiles (the setup task's output of each node: an addition beyond 2018-05-01)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from functions.api.common import (
    WS,
    JsonBody,
    accepted,
    cluster_ref,
    if_match,
    max_results,
    page,
    resource,
    settings,
    skiptoken,
    workspace_ref,
)
from shared.domain import validation
from shared.services import clusters, fileservers, job_outputs, removal
from shared.services.api_common import utcnow

router = APIRouter()
CLUSTER = WS + "/clusters/{clusterName}"
FILESERVER = WS + "/fileServers/{fileServerName}"


@router.get(f"{WS}/clusters")
def list_clusters(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str) -> dict[str, Any]:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return page(request, clusters.list_by_workspace(settings(), ws, max_results(request), skiptoken(request)))


@router.put(CLUSTER)
def create_cluster(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                   clusterName: str, body: JsonBody) -> JSONResponse:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    return resource(clusters.create(settings(), ref, body, if_match(request)))


@router.patch(CLUSTER)
def update_cluster(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                   clusterName: str, body: JsonBody) -> JSONResponse:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    return resource(clusters.update(settings(), ref, body if body is not None else {}, if_match(request)))


@router.get(CLUSTER)
def get_cluster(subscriptionId: str, resourceGroupName: str, workspaceName: str, clusterName: str) -> JSONResponse:
    return resource(clusters.get(settings(), cluster_ref(subscriptionId, resourceGroupName, workspaceName,
                                                         clusterName)))


@router.delete(CLUSTER)
def delete_cluster(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                   clusterName: str) -> Response:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    conf = settings()
    return accepted(request, removal.delete_cluster(conf, ref, if_match(request)), subscriptionId, conf)


@router.post(f"{CLUSTER}/listRemoteLoginInformation")
def cluster_remote_login(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                         clusterName: str) -> dict[str, Any]:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    return page(request, clusters.remote_login(settings(), ref))


@router.post(f"{CLUSTER}/listNodeSetupFiles")
@router.get(f"{CLUSTER}/listNodeSetupFiles")  # nextLink pages are fetched with GET
def cluster_setup_files(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                        clusterName: str) -> dict[str, Any]:
    """The node setup task's output: a directory per node (its stdout.txt and stderr.txt), one level at a
    time (`directory`: a node id, or a path under it), each file with a read-only download URL that expires
    after `linkexpiryinminutes` (5..600, default 60). Answers as listOutputFiles does."""
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    q = request.query_params
    return page(request, job_outputs.list_setup_files(settings(), ref, q.get("directory"),
                                                      q.get("linkexpiryinminutes"), max_results(request),
                                                      skiptoken(request), utcnow()))


@router.get(f"{WS}/fileServers")
def list_fileservers(request: Request, subscriptionId: str, resourceGroupName: str,
                     workspaceName: str) -> dict[str, Any]:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    return page(request, fileservers.list_by_workspace(settings(), ws, max_results(request), skiptoken(request)))


@router.put(FILESERVER)
def create_fileserver(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                      fileServerName: str, body: JsonBody) -> JSONResponse:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    validation.check_name("fileServerName", fileServerName)
    return resource(fileservers.create(settings(), ws, fileServerName, body, if_match(request)))


@router.get(FILESERVER)
def get_fileserver(subscriptionId: str, resourceGroupName: str, workspaceName: str,
                   fileServerName: str) -> JSONResponse:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    validation.check_name("fileServerName", fileServerName)
    return resource(fileservers.get(settings(), ws, fileServerName))


@router.delete(FILESERVER)
def delete_fileserver(request: Request, subscriptionId: str, resourceGroupName: str, workspaceName: str,
                      fileServerName: str) -> Response:
    ws = workspace_ref(subscriptionId, resourceGroupName, workspaceName)
    validation.check_name("fileServerName", fileServerName)
    conf = settings()
    return accepted(request, removal.delete_fileserver(conf, ws, fileServerName, if_match(request)),
                    subscriptionId, conf)
