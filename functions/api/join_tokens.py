"""Join token routes of bring-your-own clusters (an addition beyond 2018-05-01): create (the token is
answered once), list (names and expiry, never a token) and revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from functions.api.clusters import CLUSTER
from functions.api.common import JsonBody, cluster_ref, settings
from shared.domain import validation
from shared.services import join_tokens
from shared.services.api_common import utcnow

router = APIRouter()
JOIN_TOKENS = f"{CLUSTER}/joinTokens"
JOIN_TOKEN = f"{JOIN_TOKENS}/{{tokenName}}"


@router.post(JOIN_TOKENS)
def create_join_token(subscriptionId: str, resourceGroupName: str, workspaceName: str, clusterName: str,
                      body: JsonBody) -> dict[str, Any]:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    return join_tokens.create(settings(), ref, body, utcnow())


@router.get(JOIN_TOKENS)
def list_join_tokens(subscriptionId: str, resourceGroupName: str, workspaceName: str,
                     clusterName: str) -> dict[str, Any]:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    return {"value": join_tokens.list_tokens(settings(), ref)}


@router.delete(JOIN_TOKEN)
def revoke_join_token(subscriptionId: str, resourceGroupName: str, workspaceName: str, clusterName: str,
                      tokenName: str) -> Response:
    ref = cluster_ref(subscriptionId, resourceGroupName, workspaceName, clusterName)
    validation.check_name("tokenName", tokenName)
    return Response(status_code=200 if join_tokens.revoke(settings(), ref, tokenName) else 204)
