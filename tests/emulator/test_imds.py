"""IMDS instance metadata: the caller's own document, filtered paths, and Azure's request guards."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.emulator.imds import Imds
from shared.emulator.issuer import Issuer
from tests.identity.helpers import Identity, Vm, imds_client, running_imds

SS_ID = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/batchai-compute/providers/"
         "Microsoft.Compute/virtualMachineScaleSets/bai-c0ffee")
VM = Vm(resource_id=f"{SS_ID}/virtualMachines/3", name="bai-c0ffee_3", computer_name="baic0ffee000003",
        vm_id="5c08b38e-4d57-4c23-ac45-aca61037f084", private_ip="127.0.0.1", priority="Spot",
        scale_set="bai-c0ffee", identities=(Identity("system", SS_ID.replace("resourceGroups", "resourcegroups"),
                                                     "8f1b0a52-0000-4000-8000-000000000001",
                                                     "0d6c1e4a-0000-4000-8000-000000000002"),),
        tags={"batchai-cluster": "c0ffee", "owner": "team a"})


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer.load_or_create(tmp_path_factory.mktemp("issuer"), "https://127.0.0.1:1/t/v2.0", "t")


@pytest.fixture(scope="module")
def imds(issuer: Issuer) -> Iterator[Imds]:
    with running_imds(issuer, {"127.0.0.1": VM}) as running:
        yield running


@pytest.fixture
def client(imds: Imds) -> Iterator[httpx.Client]:
    with imds_client(imds) as c:
        yield c


def test_the_instance_document_describes_the_calling_vm(client: httpx.Client) -> None:
    reply = client.get("/metadata/instance", params={"api-version": "2021-02-01"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
    document = reply.json()
    compute = document["compute"]
    assert {k: compute[k] for k in ("azEnvironment", "name", "vmId", "vmSize", "priority", "location",
                                    "subscriptionId", "resourceGroupName", "vmScaleSetName", "resourceId",
                                    "osType")} == {
        "azEnvironment": "BatchAIEmulator", "name": "bai-c0ffee_3", "vmId": VM.vm_id, "vmSize": "Standard_D2s_v3",
        "priority": "Spot", "location": "westeurope", "subscriptionId": VM.subscription_id,
        "resourceGroupName": "batchai-compute", "vmScaleSetName": "bai-c0ffee", "resourceId": VM.resource_id,
        "osType": "Linux"}
    assert compute["tagsList"] == [{"name": "batchai-cluster", "value": "c0ffee"}, {"name": "owner", "value": "team a"}]
    assert compute["tags"] == "batchai-cluster:c0ffee;owner:team a"
    assert compute["osProfile"]["computerName"] == "baic0ffee000003"
    assert document["network"] == {"interface": [{
        "ipv4": {"ipAddress": [{"privateIpAddress": "127.0.0.1", "publicIpAddress": ""}],
                 "subnet": [{"address": "127.0.0.0", "prefix": "24"}]},
        "ipv6": {"ipAddress": []}, "macAddress": ""}]}


@pytest.mark.parametrize(("path", "value"), [
    ("/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress", "127.0.0.1"),
    ("/metadata/instance/compute/vmId", VM.vm_id),
    ("/metadata/instance/compute/azEnvironment", "BatchAIEmulator"),
    ("/metadata/instance/compute/osProfile/computerName", "baic0ffee000003"),
    ("/metadata/instance/network/interface/0/ipv4/subnet/0/prefix", "24"),
])
def test_a_leaf_is_its_value_as_text(client: httpx.Client, path: str, value: str) -> None:
    reply = client.get(path, params={"api-version": "2021-02-01", "format": "text"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    assert reply.text == value
    assert client.get(path, params={"api-version": "2021-02-01"}).status_code == 400  # a leaf needs format=text


def test_paths_filter_the_document(client: httpx.Client) -> None:
    version = {"api-version": "2021-02-01"}
    full = client.get("/metadata/instance", params=version).json()
    assert client.get("/metadata/instance/compute", params=version).json() == full["compute"]
    assert client.get("/metadata/instance/network/interface/0", params=version).json() == \
        full["network"]["interface"][0]
    listing = client.get("/metadata/instance", params={**version, "format": "text"})
    assert listing.text.splitlines() == ["compute/", "network/"]
    for missing in ("/metadata/instance/compute/nothing", "/metadata/instance/network/interface/1",
                    "/metadata/instance/network/interface/x", "/metadata/nothing"):
        assert client.get(missing, params=version).status_code == 404, missing
    assert client.get("/metadata/instance", params={**version, "format": "xml"}).status_code == 400


def test_the_metadata_header_is_required(imds: Imds) -> None:
    with httpx.Client(base_url=imds.url, trust_env=False) as bare:
        for headers in ({}, {"Metadata": "false"}):
            for path in ("/metadata/instance?api-version=2021-02-01",
                         "/metadata/scheduledevents?api-version=2020-07-01"):
                reply = bare.get(path, headers=headers)
                assert reply.status_code == 400
                assert reply.json() == {"error": "Bad request. Required metadata header not specified"}
        token = bare.get("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://x")
        assert token.status_code == 400
        assert token.json() == {"error": "invalid_request",
                                "error_description": "Required metadata header not specified"}


def test_forwarded_requests_are_refused(client: httpx.Client) -> None:
    for path in ("/metadata/instance?api-version=2021-02-01",
                 "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://x"):
        reply = client.get(path, headers={"X-Forwarded-For": "10.0.0.1"})
        assert reply.status_code == 400
        assert "X-Forwarded-For" in str(reply.json())


@pytest.mark.parametrize(("path", "newest"), [
    ("/metadata/instance", "2023-07-01"),
    ("/metadata/identity/oauth2/token?resource=api://x", "2019-08-01"),
    ("/metadata/scheduledevents", "2020-07-01"),
])
def test_an_api_version_is_required_and_checked(client: httpx.Client, path: str, newest: str) -> None:
    separator = "&" if "?" in path else "?"
    for suffix in ("", f"{separator}api-version=2001-01-01"):
        reply = client.get(path + suffix)
        assert reply.status_code == 400
        body = reply.json()
        assert body["error"].startswith("Bad request. api-version is invalid or was not specified")
        assert body["newest-versions"][0] == newest and len(body["newest-versions"]) <= 3


def test_versions_methods_and_duplicate_parameters(client: httpx.Client) -> None:
    versions = client.get("/metadata/versions").json()["apiVersions"]
    assert "2021-02-01" in versions
    assert client.put("/metadata/instance?api-version=2021-02-01").status_code == 405
    assert client.post("/metadata/instance?api-version=2021-02-01").status_code == 405
    assert client.get("/metadata/instance?api-version=2021-02-01&api-version=2021-02-01").status_code == 400


def test_an_unknown_caller_is_not_found(issuer: Issuer) -> None:
    with running_imds(issuer, {"10.213.0.10": VM}) as imds, imds_client(imds) as client:
        reply = client.get("/metadata/instance", params={"api-version": "2021-02-01"})
        assert reply.status_code == 404
        assert "127.0.0.1" in reply.json()["error"]
