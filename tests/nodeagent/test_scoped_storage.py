"""ScopedStorage against the real node credentials route: SAS renewed at half-life in the clients the
agent already holds, blob access asked in batches and cached, and a failed renewal that leaves the
current SAS in use until they expire. Time is the storage's clock, passed in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from shared.adapters import storage
from shared.agent.retry import TransientError
from shared.agent.runtime import TaskStartError
from shared.agent.scoped_storage import NodeApi, ScopedStorage
from shared.config import AZURITE_KEY
from tests.nodeagent.conftest import CredentialsService as Service
from tests.nodeagent.conftest import hold_assignment, new_cluster, node_of, node_token, outputs_prefix

HALF_HOUR_S = 30 * 60


PROBE = '{"reason": "probe", "message": ""}'  # what the agent puts on its poison queue


class CountingApi(NodeApi):
    """The real client, counting its calls; `down` makes the service unreachable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.down = False

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(path)
        if self.down:
            raise TransientError(f"{path}: the service is down")
        return super()._post(path, body)


@pytest.fixture
def scoped(node_api: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ScopedStorage, CountingApi,
                                                                                list[float], str]]:
    monkeypatch.setenv("SSL_CERT_FILE", node_api.ca_file)  # the agent trusts the system store it names
    key = new_cluster()
    node = node_of(key)
    api = CountingApi(node_api.url, key, node, lambda: node_token(node_api.issuer, key))
    now = [1000.0]
    yield ScopedStorage(api, {"blob": "http://unused/{account}"}, clock=lambda: now[0]), api, now, key
    api.close()


def test_node_credentials_are_renewed_at_half_life_in_place(scoped: tuple[ScopedStorage, CountingApi, list[float], str],
                                                           node_api: Service) -> None:
    storage_, api, now, key = scoped
    storage_.ensure_queues()
    storage_.send_poison(PROBE)
    grant = storage_._grant
    assert grant is not None
    poison_client = grant.poison_queue
    spoiled = grant.credentials["poisonQueue"].signature.replace("sig=", "sig=0")
    grant.credentials["poisonQueue"].update(spoiled)  # the SAS the client holds no longer works...
    now[0] += HALF_HOUR_S - 60
    with pytest.raises(HttpResponseError) as refused:
        storage_.send_poison(PROBE)
    assert refused.value.status_code == 403
    assert api.calls == ["/nodeagent/credentials"]
    now[0] += 120  # past half-life
    storage_.send_poison(PROBE)  # ...until the renewal replaces it in the same client
    assert api.calls == ["/nodeagent/credentials"] * 2
    assert storage_._grant is grant and grant.poison_queue is poison_client
    storage_.heartbeat({"pid": "1", "assignments": ""})
    beat = storage.container(node_api.conn, storage.C_HEARTBEATS).get_blob_client(
        storage.heartbeat_blob(key, node_of(key)))
    assert beat.get_blob_properties().metadata["pid"] == "1"


def test_a_failed_renewal_keeps_the_current_sas_until_they_expire(
        scoped: tuple[ScopedStorage, CountingApi, list[float], str]) -> None:
    storage_, api, now, key = scoped
    storage_.send_poison(PROBE)
    api.down = True
    now[0] += HALF_HOUR_S + 60
    storage_.send_poison(PROBE)  # renewal failed; the SAS still works
    assert api.calls == ["/nodeagent/credentials"] * 2
    now[0] += HALF_HOUR_S
    with pytest.raises(TransientError):
        storage_.send_poison(PROBE)
    api.down = False
    storage_.send_poison(PROBE)


def test_blob_access_is_asked_in_batches_and_renewed(scoped: tuple[ScopedStorage, CountingApi, list[float], str],
                                                     node_api: Service) -> None:
    storage_, api, now, key = scoped
    node = node_of(key)
    job, segment = f"j{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assignment_id = hold_assignment(node_api.conn, key, node, job, segment)
    prefix = outputs_prefix(job, segment)
    blobs = storage_.outputs(storage.C_OUTPUTS, assignment_id)
    names = [f"{prefix}/outputs/M/{i}.txt" for i in range(150)]
    blobs.prepare(names)
    assert api.calls == ["/nodeagent/blobs"] * 2  # 100 names, then 50
    for name in names[:3]:
        blobs.blob(name).upload_blob(name.encode(), overwrite=True)
    assert api.calls == ["/nodeagent/blobs"] * 2  # cached
    client = blobs.blob(names[0])
    credential = blobs._access[names[0]].credential
    credential.update(credential.signature.replace("sig=", "sig=0"))  # spoiled, as an expired SAS would be
    now[0] += HALF_HOUR_S + 1
    blobs.blob(names[0]).upload_blob(b"renewed", overwrite=True)  # works: renewed in place at half-life
    assert api.calls[-1] == "/nodeagent/blobs" and len(api.calls) == 3
    assert blobs.blob(names[0]) is client
    assert storage.container(node_api.conn, storage.C_OUTPUTS).download_blob(names[0]).readall() == b"renewed"
    with pytest.raises(ValueError):
        storage_.outputs("another-container", assignment_id)


def test_a_blob_mount_reaches_its_account_with_its_own_key_at_the_node_endpoint(node_api: Service) -> None:
    service = storage.blob_service(node_api.conn)
    template = service.url.rstrip("/").rsplit("/", 1)[0] + "/{account}"
    container = service.get_container_client(f"mounted{uuid.uuid4().hex[:8]}")
    container.create_container()
    container.upload_blob("in/data.txt", b"data")
    api = NodeApi("https://127.0.0.1:9", "k", "n", lambda: "unused")  # a mount needs no node credentials
    scoped = ScopedStorage(api, {"blob": template})
    mounted = scoped.mount_container(service.account_name, container.container_name,
                                     {"accountKey": AZURITE_KEY})
    assert [b.name for b in mounted.list_blobs()] == ["in/data.txt"]
    with pytest.raises(TaskStartError) as caught:
        scoped.mount_container(service.account_name, container.container_name, {})
    assert caught.value.code == "MountFailed"
    api.close()
