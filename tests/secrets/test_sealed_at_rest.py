"""Secrets stored sealed (tables hold no plain secret value), compared opened (a repeated create is
idempotent), never returned (mountCommand masked), opened only where they leave for a node (the
scale set's custom data and OS profile), and Key Vault references only to the vaults allowed."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import httpx
import pytest

from shared.adapters import storage
from shared.adapters.compute import provider_for
from shared.config import Settings
from shared.domain.keys import WorkspaceRef
from shared.services import nodes
from tests.azure.helpers import azure_settings
from tests.ingress.conftest import API, cluster_body, error_of, job_body, put, workspace

SECRETS = {"admin": "adm-Pw-7b1e", "setup": "setup-Sec-2c4d", "afskey": "afs-Key-9e0f", "mount": "mnt-Pw-3a5b",
           "job": "job-Sec-6d7e", "registry": "reg-Pw-8f9a", "jobkey": "job-Key-1b2c", "fs": "fs-Pw-4d5e"}


def _cluster_props() -> dict[str, Any]:
    return {
        "userAccountSettings": {"adminUserName": "u", "adminUserPassword": SECRETS["admin"]},
        "nodeSetup": {
            "setupTask": {"commandLine": "true", "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/setup",
                          "secrets": [{"name": "SETUP_SECRET", "value": SECRETS["setup"]}]},
            "mountVolumes": {
                "azureFileShares": [{"accountName": "acct", "azureFileUrl": "https://acct.file.core.windows.net/s",
                                     "relativeMountPath": "afs", "credentials": {"accountKey": SECRETS["afskey"]}}],
                "unmanagedFileSystems": [{"mountCommand": f"mount -t cifs //h/s -o password={SECRETS['mount']}",
                                          "relativeMountPath": "um"}]}}}


def _job_props() -> dict[str, Any]:
    return {
        "secrets": [{"name": "JOB_SECRET", "value": SECRETS["job"]}],
        "containerSettings": {"imageSourceRegistry": {"image": "busybox", "serverUrl": "r.example.com",
                                                      "credentials": {"username": "u",
                                                                      "password": SECRETS["registry"]}}},
        "mountVolumes": {"azureBlobFileSystems": [{"accountName": "acct", "containerName": "c",
                                                   "relativeMountPath": "b",
                                                   "credentials": {"accountKey": SECRETS["jobkey"]}}]}}


def _rows(conn: str, table: str) -> str:
    return json.dumps([dict(e) for e in storage.table(conn, table).list_entities()])


def test_secrets_are_sealed_in_the_tables_and_never_returned(http: httpx.Client, sub: str,
                                                              storage_conn: str) -> None:
    ws = workspace(http, sub)
    put(http, f"{ws}/experiments/e", {})
    cluster = put(http, f"{ws}/clusters/c", cluster_body(0, **_cluster_props()))
    assert cluster.status_code == 200, cluster.text
    mounts = cluster.json()["properties"]["nodeSetup"]["mountVolumes"]
    assert mounts["unmanagedFileSystems"][0]["mountCommand"] == "<redacted>"
    job = put(http, f"{ws}/experiments/e/jobs/j", job_body(f"{ws}/clusters/c", **_job_props()))
    assert job.status_code == 200, job.text
    server = put(http, f"{ws}/fileServers/fs", {"properties": {
        "vmSize": "STANDARD_D1_V2",
        "dataDisks": {"diskSizeInGB": 1, "diskCount": 1, "storageAccountType": "Standard_LRS"},
        "sshConfiguration": {"userAccountSettings": {"adminUserName": "u", "adminUserPassword": SECRETS["fs"]}}}})
    assert server.status_code == 200, server.text
    answers = [cluster.text, job.text, server.text] + [http.get(p, params=API).text for p in (
        f"{ws}/clusters/c", f"{ws}/experiments/e/jobs/j", f"{ws}/fileServers/fs", f"{ws}/clusters",
        f"{ws}/experiments/e/jobs", f"{ws}/fileServers")]
    tables = {t: _rows(storage_conn, t) for t in (storage.T_CLUSTERS, storage.T_JOBS, storage.T_FILESERVERS)}
    for name, value in SECRETS.items():
        assert not [a for a in answers if value in a], name
        assert not [t for t, rows in tables.items() if value in rows], name
    assert all("sealed:v1:" in rows for rows in tables.values())


def test_a_repeated_create_compares_the_opened_secrets(http: httpx.Client, sub: str) -> None:
    ws = workspace(http, sub)
    put(http, f"{ws}/experiments/e", {})
    body = cluster_body(0, **_cluster_props())
    first = put(http, f"{ws}/clusters/c", body)
    again = put(http, f"{ws}/clusters/c", body)
    assert (first.status_code, again.status_code) == (200, 200) and first.headers["etag"] == again.headers["etag"]
    job = job_body(f"{ws}/clusters/c", **_job_props())
    assert put(http, f"{ws}/experiments/e/jobs/j", job).status_code == 200
    assert put(http, f"{ws}/experiments/e/jobs/j", job).status_code == 200
    job["properties"]["secrets"][0]["value"] = "another-value"
    changed = put(http, f"{ws}/experiments/e/jobs/j", job)
    assert changed.status_code == 409, changed.text


def test_secrets_leave_opened_in_the_scale_set_model_only(http: httpx.Client, sub: str, storage_conn: str) -> None:
    ws = workspace(http, sub)
    assert put(http, f"{ws}/clusters/c", cluster_body(0, **_cluster_props())).status_code == 200
    ref = WorkspaceRef(sub, "demo", "w").cluster("c")
    spec = nodes.cluster_spec(ref.key, nodes.load_cluster(Settings.from_env(), ref.key))
    assert SECRETS["afskey"] not in json.dumps(spec.properties)
    settings = dataclasses.replace(Settings.from_env(), provider="vmss", azure=azure_settings(
        arm_endpoint="https://127.0.0.1:9", arm_token="unused"))  # building the model calls no ARM
    model = provider_for(settings).scale_set_model(spec, 1)
    profile = model.properties.virtual_machine_profile.os_profile
    custom_data = base64.b64decode(profile.custom_data).decode()
    assert profile.admin_password == SECRETS["admin"]
    assert SECRETS["afskey"] in custom_data and SECRETS["mount"] in custom_data
    assert "sealed:v1:" not in custom_data


@pytest.mark.parametrize("url", ["https://evil.example.com/secrets/x", "http://v.vault.azure.net/secrets/x",
                                 "https://v.vault.azure.net.evil.com/secrets/x", "https://u@v.vault.azure.net/secrets/x",
                                 "https://v.vault.azure.net/keys/x", "https://a.b.vault.azure.net/secrets/x",
                                 "https://v.vault.azure.net/secrets/x?y=1", "https://v.vault.azure.net/secrets/../x"])
def test_key_vault_references_point_at_allowed_vaults_only(http: httpx.Client, sub: str, url: str) -> None:
    ws = workspace(http, sub)
    put(http, f"{ws}/experiments/e", {})
    assert put(http, f"{ws}/clusters/c", cluster_body(0)).status_code == 200
    reference = {"sourceVault": {"id": "/subscriptions/x/resourceGroups/y/providers/Microsoft.KeyVault/vaults/v"},
                 "secretUrl": url}
    r = put(http, f"{ws}/experiments/e/jobs/j", job_body(f"{ws}/clusters/c", secrets=[
        {"name": "S", "valueSecretReference": reference}]))
    assert r.status_code == 400, r.text
    assert error_of(r)["target"] == "properties.secrets[0].valueSecretReference.secretUrl"
    reference["secretUrl"] = "https://v.vault.azure.net/secrets/x/0123456789abcdef0123456789abcdef"
    ok = put(http, f"{ws}/experiments/e/jobs/j", job_body(f"{ws}/clusters/c", secrets=[
        {"name": "S", "valueSecretReference": reference}]))
    assert ok.status_code == 200, ok.text


def test_the_allowed_vault_hosts_are_a_setting(http: httpx.Client, sub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHAI_KEY_VAULT_HOSTS", "127.0.0.1:7075")
    ws = workspace(http, sub)
    body = cluster_body(0, userAccountSettings={"adminUserName": "u"}, nodeSetup={"mountVolumes": {
        "azureFileShares": [{"accountName": "a", "azureFileUrl": "https://a.file.core.windows.net/s",
                             "relativeMountPath": "s", "credentials": {"accountKeySecretReference": {
                                 "sourceVault": {"id": "v"}, "secretUrl": "https://v.vault.azure.net/secrets/k"}}}]}})
    refused = put(http, f"{ws}/clusters/c", body)
    assert refused.status_code == 400, refused.text
    share = body["properties"]["nodeSetup"]["mountVolumes"]["azureFileShares"][0]
    share["credentials"]["accountKeySecretReference"]["secretUrl"] = "https://127.0.0.1:7075/secrets/k"
    assert put(http, f"{ws}/clusters/c", body).status_code == 200
