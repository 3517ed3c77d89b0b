"""The Bicep deploys an API that takes Entra ID tokens for the app and refuses others: App Service
authentication (Easy Auth) demands a token (401 otherwise) from the tenant's Entra ID v2 issuer for the
API's audiences, and the app validates the same issuer and audiences under the app setting names the
local stack runs with. The templates are read with a Bicep parser (pycep)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from functions.http_api import OPEN_PATHS
from shared.config import Settings
from shared.localstack import cloud_topology
from shared.localstack.tls import ensure_tls
from shared.localstack.token import api_settings
from tests.identity.helpers import TENANT, running_issuer

INFRA = Path(__file__).resolve().parents[2] / "infra"
APP_NAMES = {"BATCHAI_TOKEN_ISSUER", "BATCHAI_API_AUDIENCE", "BATCHAI_OWNER_OBJECT_IDS"}


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return BicepParser(cache=False).parse(file_path=INFRA / "main.bicep")


@pytest.fixture(scope="module")
def app() -> dict[str, Any]:
    return BicepParser(cache=False).parse(file_path=INFRA / "modules" / "functionapp.bicep")


def join_of(value: Any) -> str:
    """The array a `join(array, ',')` call joins (its argument's name)."""
    call = value["function"]
    assert call["type"] == "join" and call["parameters"]["delimiter"] == ",", value
    return str(call["parameters"]["input_array"])


def test_easy_auth_demands_an_entra_token_for_the_api(app: dict[str, Any]) -> None:
    auth = app["resources"]["auth"]
    assert (auth["type"], auth["config"]["name"], auth["config"]["parent"]) == \
        ("Microsoft.Web/sites/config", "authsettingsV2", "app")
    props = auth["config"]["properties"]
    assert props["platform"]["enabled"] is True
    assert props["globalValidation"]["requireAuthentication"] is True
    assert props["globalValidation"]["unauthenticatedClientAction"] == "Return401"
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert props["login"]["tokenStore"]["enabled"] is False
    # the issuer, client id and audiences are the module's parameters, given by main.bicep
    for name in (aad["registration"]["openIdIssuer"], aad["registration"]["clientId"],
                 aad["validation"]["allowedAudiences"]):
        assert name in app["parameters"], name


def test_only_the_routes_that_authenticate_themselves_pass_easy_auth(app: dict[str, Any]) -> None:
    excluded = app["resources"]["auth"]["config"]["properties"]["globalValidation"]["excludedPaths"]
    assert sorted(app["variables"][excluded]["value"]) == sorted(OPEN_PATHS)


def test_the_app_validates_the_same_issuer_and_audiences(app: dict[str, Any]) -> None:
    aad = app["resources"]["auth"]["config"]["properties"]["identityProviders"]["azureActiveDirectory"]
    settings = app["variables"]["baseSettings"]["value"]
    assert settings["BATCHAI_TOKEN_ISSUER"] == aad["registration"]["openIdIssuer"]
    assert join_of(settings["BATCHAI_API_AUDIENCE"]) == aad["validation"]["allowedAudiences"]
    loop = app["resources"]["app"]["config"]["properties"]["siteConfig"]["appSettings"]["loop_type"]
    union = loop["detail"]["array_name"]["function"]["parameters"]["arg_1"]["function"]
    assert union["type"] == "union" and union["parameters"]["arg_1"] == "baseSettings"  # they reach the site


def test_main_gives_the_tenants_entra_issuer_and_the_apps_audiences(main: dict[str, Any]) -> None:
    params = main["modules"]["functionApp"]["config"]["params"]
    assert params["tokenIssuer"] == "tokenIssuer"
    issuer = main["variables"]["tokenIssuer"]["value"]
    assert issuer == "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
    assert params["apiClientId"] == "apiClientId" and main["parameters"]["apiClientId"]["default"] is None
    assert params["apiAudiences"] == "apiAudiences"
    assert main["parameters"]["apiAudiences"]["default"] == ["api://${apiClientId}", "apiClientId"]
    assert join_of(params["appSettings"]["BATCHAI_OWNER_OBJECT_IDS"]) == "ownerObjectIds"
    assert main["parameters"]["ownerObjectIds"]["default"] == []


def test_the_local_stack_runs_with_the_same_names_and_kinds_of_value(
        app: dict[str, Any], main: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deployed = {*app["variables"]["baseSettings"]["value"], *main["modules"]["functionApp"]["config"]["params"][
        "appSettings"]} & (APP_NAMES | {"BATCHAI_TOKEN_ISSUER_CA_FILE"})
    assert deployed == APP_NAMES  # on Azure the issuer's certificate is checked against the system CAs
    with running_issuer(tmp_path) as (server, _):
        local_issuer = server.issuer.url
        local = {**cloud_topology.issuer_settings({"issuer": local_issuer}, ensure_tls(tmp_path / "tls")),
                 **api_settings(local_issuer)}
    assert set(local) == APP_NAMES | {"BATCHAI_TOKEN_ISSUER_CA_FILE"}  # + the CA of a private issuer
    # Entra ID's v2 issuer is {authority}/{tenant}/v2.0; so is the local stack's
    template = main["variables"]["tokenIssuer"]["value"]
    authority = re.fullmatch(rf"(https://127\.0\.0\.1:\d+/){TENANT}/v2\.0", local_issuer)
    assert authority, local_issuer
    rendered = template.replace("${environment().authentication.loginEndpoint}", authority.group(1)) \
        .replace("${tenant().tenantId}", TENANT)
    assert rendered == local_issuer
    # the app reads the joined audiences back as the list Easy Auth was given
    audiences = ["api://0f5e0b5e-8a4c-4f4e-9d0b-3f1b6c1c7a10", "0f5e0b5e-8a4c-4f4e-9d0b-3f1b6c1c7a10"]
    monkeypatch.setenv("BATCHAI_API_AUDIENCE", ",".join(audiences))
    monkeypatch.setenv("BATCHAI_TOKEN_ISSUER", rendered)
    monkeypatch.setenv("BATCHAI_OWNER_OBJECT_IDS", ",".join(["A1B2C3D4-0000-4000-8000-000000000001"]))
    conf = Settings.from_env()
    assert (conf.token_issuer, conf.api_audiences) == (rendered, tuple(audiences))
    assert conf.owner_object_ids == {"a1b2c3d4-0000-4000-8000-000000000001"}
