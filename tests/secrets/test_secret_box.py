"""The secret box: sealed values open only with their key, sealing is idempotent, plain values of old
documents open as they are, and exactly the secret fields of a document are sealed."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from shared.adapters import secret_box
from shared.adapters.secret_box import SecretBox, SecretBoxError
from shared.config import Settings
from shared.domain import resources

SECRET = "hunter2-\u00e9-value"


def _box() -> SecretBox:
    return SecretBox(os.urandom(32))


def test_sealed_values_open_with_their_key_only() -> None:
    box = _box()
    sealed = box.seal(SECRET)
    assert sealed.startswith("sealed:v1:") and SECRET not in sealed
    assert SecretBox.is_sealed(sealed) and not SecretBox.is_sealed(SECRET)
    assert box.open(sealed) == SECRET
    assert box.seal(SECRET) != sealed  # a fresh nonce every time: equal secrets do not look equal
    assert box.seal(sealed) == sealed  # sealing twice changes nothing
    assert box.open("plain, from an old document") == "plain, from an old document"
    with pytest.raises(SecretBoxError):
        _box().open(sealed)
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SecretBoxError):
        box.open(tampered)
    with pytest.raises(SecretBoxError):
        SecretBox(b"short")


def test_exactly_the_secret_fields_are_sealed_and_all_open() -> None:
    box = _box()
    doc = {
        "secrets": [{"name": "TOKEN", "value": "s1"}, {"name": "REF", "valueSecretReference": {"secretUrl": "u"}}],
        "environmentVariables": [{"name": "PLAIN", "value": "not secret"}],
        "containerSettings": {"imageSourceRegistry": {"image": "i", "credentials": {"username": "u",
                                                                                   "password": "s2"}}},
        "mountVolumes": {"azureFileShares": [{"accountName": "a", "credentials": {"accountKey": "s3"}}],
                         "unmanagedFileSystems": [{"mountCommand": "mount -o password=s4", "relativeMountPath": "u"}]},
        "userAccountSettings": {"adminUserName": "admin", "adminUserPassword": "s5"},
        "nodeSetup": {"setupTask": {"secrets": [{"name": "S", "value": "s6"}], "commandLine": "echo"}},
    }
    sealed = box.seal_secrets(doc)
    text = json.dumps(sealed)
    for value in ("s1", "s2", "s3", "mount -o password=s4", "s5", "s6"):
        assert f'"{value}"' not in text, value
    assert "not secret" in text and '"admin"' in text and '"u"' in text
    assert sorted(resources.secret_values(doc)) == ["mount -o password=s4", "s1", "s2", "s3", "s5", "s6"]
    assert all(SecretBox.is_sealed(v) for v in resources.secret_values(sealed))
    assert box.open_all(sealed) == doc
    assert box.seal_secrets(sealed) == sealed


def test_the_key_comes_from_settings_and_is_needed_only_for_secrets(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), secrets_key="")
    plain = {"nodeCount": 1, "secrets": []}
    assert secret_box.seal_secrets(settings, plain) is plain
    with pytest.raises(SecretBoxError, match="BATCHAI_SECRETS_KEY"):
        secret_box.seal_secrets(settings, {"secrets": [{"name": "A", "value": "x"}]})
    key_file = tmp_path / "local" / "secrets.key"
    key = secret_box.ensure_key_file(key_file)
    assert secret_box.ensure_key_file(key_file) == key and len(base64.b64decode(key)) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keyed = dataclasses.replace(settings, secrets_key=key)
    sealed = secret_box.seal_secrets(keyed, {"secrets": [{"name": "A", "value": "x"}]})
    assert secret_box.open_all(keyed, sealed) == {"secrets": [{"name": "A", "value": "x"}]}
    with pytest.raises(SecretBoxError):
        secret_box.open_all(dataclasses.replace(settings, secrets_key=secret_box.new_key()), sealed)
