"""Bring-your-own clusters through the API (real Azurite): nodeSource validated, stored and echoed; join
tokens created (answered once), listed (never the token), revoked; a join token exchanged on the node
API for a node credential that holds only while the token does (revoked or expired: 401)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.adapters import join_tokens, node_tokens, storage
from shared.adapters.compute.byo import ByoProvider
from tests.api.conftest import API, unique


def cluster_body(**props: Any) -> dict[str, Any]:
    return {"properties": {"vmSize": "STANDARD_D1_V2", "userAccountSettings": {"adminUserName": "u"},
                           "scaleSettings": {"manual": {"targetNodeCount": 0}}, **props}}


@pytest.fixture()
def workspace(http: httpx.Client, ws_path: Callable[[str], str]) -> str:
    ws = ws_path(unique("byo"))
    r = http.put(f"{ws}?{API}", json={"location": "local"})
    assert r.status_code in (200, 201, 202), r.text
    return ws


@pytest.fixture()
def byo_cluster(http: httpx.Client, workspace: str) -> str:
    cluster = f"{workspace}/clusters/own"
    r = http.put(f"{cluster}?{API}", json=cluster_body(nodeSource="bringYourOwn"))
    assert r.status_code in (200, 201), r.text
    return cluster


def node_api(api_endpoint: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=api_endpoint["url"], verify=ssl.create_default_context(cafile=api_endpoint["ca_file"]),
                        timeout=30)


def test_node_source_is_validated_stored_and_echoed(http: httpx.Client, workspace: str, byo_cluster: str) -> None:
    assert http.get(f"{byo_cluster}?{API}").json()["properties"]["nodeSource"] == "bringYourOwn"
    r = http.put(f"{workspace}/clusters/plain?{API}", json=cluster_body())
    assert r.status_code in (200, 201), r.text
    assert "nodeSource" not in http.get(f"{workspace}/clusters/plain?{API}").json()["properties"]  # 2018-05-01 as is
    r = http.put(f"{workspace}/clusters/named?{API}", json=cluster_body(nodeSource="provider"))
    assert r.status_code in (200, 201) and r.json()["properties"]["nodeSource"] == "provider"
    r = http.put(f"{workspace}/clusters/odd?{API}", json=cluster_body(nodeSource="theirs"))
    assert r.status_code == 400
    assert r.json()["error"]["target"] == "properties.nodeSource"
    # The same request again is the same cluster; another node source is another request (409)
    assert http.put(f"{byo_cluster}?{API}", json=cluster_body(nodeSource="bringYourOwn")).status_code == 200
    assert http.put(f"{byo_cluster}?{API}", json=cluster_body()).status_code == 409
    assert http.put(f"{workspace}/clusters/plain?{API}", json=cluster_body(nodeSource="provider")).status_code == 200


def test_join_tokens_are_answered_once_listed_without_the_token_and_revoked(
        http: httpx.Client, workspace: str, byo_cluster: str, storage_conn: str) -> None:
    r = http.post(f"{byo_cluster}/joinTokens?{API}", json={"expiresInHours": 2})
    assert r.status_code == 200, r.text
    created = r.json()
    expires = datetime.fromisoformat(created["expiresAt"])
    assert timedelta(hours=1.9) < expires - datetime.now(UTC) <= timedelta(hours=2)
    assert created["token"].startswith(join_tokens.PREFIX)
    default = http.post(f"{byo_cluster}/joinTokens?{API}").json()  # no body: 24 hours
    assert datetime.fromisoformat(default["expiresAt"]) - expires > timedelta(hours=21)

    listed = http.get(f"{byo_cluster}/joinTokens?{API}").json()["value"]
    assert {t["name"] for t in listed} == {created["name"], default["name"]}
    assert all("token" not in t for t in listed)
    row = storage.table(storage_conn, storage.T_JOIN_TOKENS).get_entity(
        join_tokens.parse(created["token"])[0], created["name"])  # type: ignore[index]
    assert created["token"] not in str(dict(row))  # stored hashed

    assert http.delete(f"{byo_cluster}/joinTokens/{created['name']}?{API}").status_code == 200
    assert http.delete(f"{byo_cluster}/joinTokens/{created['name']}?{API}").status_code == 204
    assert [t["name"] for t in http.get(f"{byo_cluster}/joinTokens?{API}").json()["value"]] == [default["name"]]


@pytest.mark.parametrize("hours", [0, -1, 721, "2", True])
def test_a_bad_lifetime_is_a_400(http: httpx.Client, byo_cluster: str, hours: Any) -> None:
    r = http.post(f"{byo_cluster}/joinTokens?{API}", json={"expiresInHours": hours})
    assert r.status_code == 400 and r.json()["error"]["target"] == "expiresInHours", r.text


def test_only_bring_your_own_clusters_take_join_tokens(http: httpx.Client, workspace: str) -> None:
    assert http.put(f"{workspace}/clusters/plain?{API}", json=cluster_body()).status_code in (200, 201)
    r = http.post(f"{workspace}/clusters/plain/joinTokens?{API}", json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "NotBringYourOwn"
    assert http.post(f"{workspace}/clusters/none/joinTokens?{API}", json={}).status_code == 404


def join(api_endpoint: dict[str, str], token: str, name: str) -> httpx.Response:
    with node_api(api_endpoint) as nodes:
        return nodes.post("/nodeagent/join", json={"name": name}, headers={"Authorization": f"Bearer {token}"})


def credentials(api_endpoint: dict[str, str], joined: dict[str, Any]) -> httpx.Response:
    with node_api(api_endpoint) as nodes:
        return nodes.post("/nodeagent/credentials", json={"clusterKey": joined["clusterKey"],
                                                          "nodeId": joined["nodeId"]},
                          headers={"Authorization": f"Bearer {joined['nodeToken']}"})


def test_a_join_token_becomes_a_node_credential_that_dies_with_it(
        http: httpx.Client, api_endpoint: dict[str, str], byo_cluster: str, storage_conn: str) -> None:
    token = http.post(f"{byo_cluster}/joinTokens?{API}", json={"expiresInHours": 1}).json()
    r = join(api_endpoint, token["token"], "Gpu Box 1")
    assert r.status_code == 200, r.text
    joined = r.json()
    assert joined["nodeId"].endswith("-gpu-box-1") and joined["nodeToken"].startswith(node_tokens.PREFIX)
    assert credentials(api_endpoint, joined).status_code == 200
    provider = ByoProvider(storage_conn)
    assert [(i.node_id, i.state) for i in provider.list_instances(joined["clusterKey"])] == \
        [(joined["nodeId"], "running")]

    assert http.delete(f"{byo_cluster}/joinTokens/{token['name']}?{API}").status_code == 200
    refused = credentials(api_endpoint, joined)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    [instance] = provider.list_instances(joined["clusterKey"])
    assert instance.state == "failed" and "revoked" in instance.detail
    assert join(api_endpoint, token["token"], "another").status_code == 401  # a revoked token joins nothing


def test_an_expired_join_token_neither_joins_nor_keeps_its_nodes(
        http: httpx.Client, api_endpoint: dict[str, str], byo_cluster: str, storage_conn: str) -> None:
    token = http.post(f"{byo_cluster}/joinTokens?{API}", json={"expiresInHours": 1}).json()
    joined = join(api_endpoint, token["token"], "box").json()
    assert credentials(api_endpoint, joined).status_code == 200
    # An hour passes: the token's expiry is now behind us
    table = storage.table(storage_conn, storage.T_JOIN_TOKENS)
    row = table.get_entity(joined["clusterKey"], token["name"])
    row["expiresAt"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    table.update_entity(row)
    refused = credentials(api_endpoint, joined)
    assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]
    late = join(api_endpoint, token["token"], "late")
    assert late.status_code == 401 and "expired" in late.json()["error"]["message"]


@pytest.mark.parametrize("bearer", ["", "baijoin1.e30.x", "bainode1.abc", "not-a-token"])
def test_the_join_route_refuses_what_is_not_a_live_join_token(api_endpoint: dict[str, str], bearer: str) -> None:
    r = join(api_endpoint, bearer, "box") if bearer else node_api(api_endpoint).post("/nodeagent/join",
                                                                                      json={"name": "box"})
    assert r.status_code == 401, r.text


def test_a_node_credential_proves_one_node_only(http: httpx.Client, api_endpoint: dict[str, str],
                                                byo_cluster: str) -> None:
    token = http.post(f"{byo_cluster}/joinTokens?{API}", json={}).json()
    first, second = (join(api_endpoint, token["token"], n).json() for n in ("one", "two"))
    forged = {**first, "nodeId": second["nodeId"]}
    assert credentials(api_endpoint, forged).status_code == 403
    with node_api(api_endpoint) as nodes:
        r = nodes.post("/nodeagent/node", json={"clusterKey": first["clusterKey"], "nodeId": first["nodeId"]},
                       headers={"Authorization": f"Bearer {first['nodeToken']}"})
    assert r.status_code == 200 and r.json() == {"state": ""}  # joined, not registered yet
