"""The local cloud's Key Vault (secret PUT and GET, Key Vault's answers and challenge) and the client
nodes and the service read it with (`shared.adapters.key_vault`: allowed vaults only)."""

from __future__ import annotations

import argparse
import stat
import uuid
from pathlib import Path

import httpx
import pytest

from shared.adapters import key_vault
from shared.emulator.__main__ import start
from shared.emulator.keyvault import STORE
from tests.nodeagent.service import CredentialsService, secret_name


def vault_token(node_api: CredentialsService, **claims: object) -> str:
    principal = str(uuid.uuid4())
    return node_api.issuer.sign({"aud": key_vault.RESOURCE, "sub": principal, "oid": principal, **claims})


def test_a_secret_put_is_read_back_by_name_and_by_version(node_api: CredentialsService) -> None:
    vault, name = node_api.vault, secret_name()
    token = vault_token(node_api)
    with node_api.client() as client:
        put = client.put(vault.secret_url(name), params={"api-version": "7.4"}, json={"value": "first"},
                         headers={"Authorization": f"Bearer {token}"})
        assert put.status_code == 200, put.text
        first_id = put.json()["id"]
        client.put(vault.secret_url(name), params={"api-version": "7.4"}, json={"value": "second"},
                   headers={"Authorization": f"Bearer {token}"})
    hosts = [f"127.0.0.1:{vault.port}"]
    assert key_vault.read_secret(vault.secret_url(name), token, hosts, node_api.ca_file) == "second"
    assert key_vault.read_secret(first_id, token, hosts, node_api.ca_file) == "first"
    assert (Path(vault.directory) / STORE).stat().st_mode & 0o777 == stat.S_IRUSR | stat.S_IWUSR


def test_key_vault_refuses_missing_and_foreign_tokens_and_unknown_secrets(node_api: CredentialsService) -> None:
    vault, name = node_api.vault, secret_name()
    vault.set_secret(name, "v")
    url = vault.secret_url(name)

    def get(token: str | None, target: str = url, version: str = "7.4") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with node_api.client() as client:
            return client.get(target, params={"api-version": version} if version else {}, headers=headers)

    missing = get(None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "Unauthorized"
    assert f'resource="{key_vault.RESOURCE}"' in missing.headers["WWW-Authenticate"]
    for token in (vault_token(node_api, aud="api://batchai-nodes"), "not-a-jwt"):
        assert get(token).status_code == 401
    good = vault_token(node_api)
    assert get(good, url + "x").json()["error"]["code"] == "SecretNotFound"
    assert get(good, f"{url}/{uuid.uuid4().hex}").status_code == 404
    assert get(good, version="").status_code == 400
    assert get(good).json()["value"] == "v"


@pytest.mark.parametrize("url", [
    "https://evil.example/secrets/x",  # not an allowed vault: the token must not go there
    "http://myvault.vault.azure.net/secrets/x",  # not https
    "https://myvault.vault.azure.net/keys/x",  # not a secret
    "https://myvault.vault.azure.net/secrets/x?api-version=1",
    "https://a.b.vault.azure.net/secrets/x",  # "*" is one label
    "https://myvault.vault.azure.net.evil.example/secrets/x",
])
def test_the_client_sends_its_token_only_to_allowed_vaults(url: str) -> None:
    with pytest.raises(key_vault.VaultRefused):
        key_vault.read_secret(url, "token", ["*.vault.azure.net"])


def test_allowed_vault_urls() -> None:
    hosts = ["*.vault.azure.net", "127.0.0.1:7075"]
    assert key_vault.check_secret_url("https://myvault.vault.azure.net/secrets/name", hosts)
    assert key_vault.check_secret_url("https://127.0.0.1:7075/secrets/name/" + "0" * 32, hosts)
    with pytest.raises(key_vault.VaultRefused):
        key_vault.check_secret_url("https://127.0.0.1:7076/secrets/name", hosts)


def test_the_local_cloud_serves_its_key_vault(tmp_path: Path) -> None:
    """`python -m shared.emulator` starts Key Vault beside the issuer and says where in ready.json."""
    cloud, ready = start(argparse.Namespace(state_dir=tmp_path, stack_id="kvtest", tenant_id=str(uuid.uuid4()),
                                            subscription_id=str(uuid.uuid4()), issuer_port=0, network="", image="",
                                            arm_port=0, imds_port=0, keyvault_port=0, preempt_notice=30.0))
    try:
        assert cloud.keyvault is not None and ready["keyvault"] == cloud.keyvault.url
        cloud.keyvault.set_secret("stored", "kept")
        assert (tmp_path / "keyvault" / STORE).exists()  # under the stack's state directory
        principal = str(uuid.uuid4())
        token = cloud.issuer.sign({"aud": key_vault.RESOURCE, "sub": principal, "oid": principal})
        hosts = [str(ready["keyvault"]).removeprefix("https://")]
        ca = str(tmp_path / "tls" / "ca.pem")
        assert key_vault.read_secret(cloud.keyvault.secret_url("stored"), token, hosts, ca) == "kept"
    finally:
        cloud.stop()
