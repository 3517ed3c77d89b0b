"""Scoring in the data account: with the service's account and the data account apart (as in Azure and
the machine topology), a run's work containers live in the data account, and its jobs' documents
carry no key of the service's account, sealed or plain; the only key they carry (sealed) is the data
account's, for the job's own work container."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters import secret_box, storage
from shared.config import Settings
from shared.domain import scoring as sc
from shared.domain.keys import WorkspaceRef
from shared.localstack.azurite import Azurite, start_azurite
from shared.services import clusters, experiments, scoring_start, workspaces
from shared.services.api_common import store
from tests.ingress.conftest import cluster_body

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
SERVICE, DATA = "svcacct", "dataacct"


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    location = tmp_path_factory.mktemp("two-accounts")
    keys = {name: base64.b64encode(os.urandom(64)).decode() for name in (SERVICE, DATA)}
    server = start_azurite(location, log=Path(location) / "azurite.log", accounts=keys)
    try:
        yield server
    finally:
        server.stop()


def test_scoring_jobs_carry_no_key_of_the_service_s_account(accounts: Azurite, api_endpoint: dict[str, str]) -> None:
    service, data = accounts.account_connection_string(SERVICE), accounts.account_connection_string(DATA)
    for conn in (service, data):
        storage.ensure_all(conn)
    settings = dataclasses.replace(Settings.from_env(), storage_connection_string=service,
                                   data_connection_string=data)
    ws = WorkspaceRef(api_endpoint["subscription_id"], "accounts", f"w{uuid.uuid4().hex[:6]}")
    workspaces.create(settings, ws, {"location": "local", "properties": {"dataContainers": ["inputs", "outputs"]}})
    experiments.create(settings, ws.experiment("e"), {})
    clusters.create(settings, ws.cluster("c"), cluster_body(0))
    storage.blob_service(data).create_container("inputs")
    for i in range(3):
        storage.container(data, "inputs").upload_blob(f"x/{i}.txt", b"item")
    manifest = {"cluster": "c", "experiment": "e", "input": {"container": "inputs", "prefix": "x/"},
                "output": {"container": "outputs", "prefix": "y/"}, "itemsPerJob": 2,
                "jobTemplate": {"properties": {"stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
                                               "customToolkitSettings": {"commandLine": "true"}}}}
    ref = scoring_start.start_from_blob(settings, f"{ws.subscription}/{ws.resource_group}/{ws.workspace}/m.json",
                                        '"0x1"', json.dumps(manifest).encode(), NOW,
                                        f"Bearer {api_endpoint['token']}")
    assert ref is not None
    jobs = list(store(settings, storage.T_JOBS).scan(pk=ws.experiment("e").job_pk))
    assert sorted(d.data["name"] for d in jobs) == [sc.chunk_job_name(ref.name, i, 1) for i in range(2)]
    service_key, data_key = accounts.accounts[SERVICE], accounts.accounts[DATA]
    for doc in jobs:
        stored = json.dumps(doc.data)
        opened = secret_box.open_all(settings, doc.data)
        assert service_key not in stored and data_key not in stored
        assert service_key not in json.dumps(opened)
        (mount,) = opened["properties"]["mountVolumes"]["azureBlobFileSystems"]
        assert (mount["accountName"], mount["credentials"]["accountKey"]) == (DATA, data_key)
        assert mount["containerName"].startswith(storage.SCORING_WORK_PREFIX)
    work = {c.name for c in storage.blob_service(data).list_containers(name_starts_with=storage.SCORING_WORK_PREFIX)}
    assert work == {sc.work_container(ref.name, i) for i in range(2)}
    assert not list(storage.blob_service(service).list_containers(name_starts_with=storage.SCORING_WORK_PREFIX))
