"""Scoring manifests act for the principal whose token their blob metadata carries, in the workspace
their path names (never their body's), and reach only the data containers that workspace registered,
never the service's own. The start of a run is called directly, as the blob trigger calls it."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError

from shared.adapters import storage
from shared.config import Settings
from shared.domain import scoring as sc
from shared.domain.keys import RunRef
from shared.emulator.issuer import Issuer
from shared.services import scoring, scoring_start
from shared.services.api_common import store
from tests.authz.conftest import client
from tests.ingress.conftest import API
from tests.ingress.world import World, make_world

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
TEMPLATE = {"properties": {"stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
                           "customToolkitSettings": {"commandLine": "true"},
                           "secrets": [{"name": "TEMPLATE_SECRET", "value": "tpl-Sec-0c1d"}]}}


@pytest.fixture(scope="module")
def world(api_endpoint: dict[str, str], api_issuer: Issuer) -> World:
    return make_world(api_endpoint, api_issuer)


def _manifest(w: World, **overrides: Any) -> dict[str, Any]:
    return {"cluster": "c", "experiment": "e", "input": {"container": w.inputs, "prefix": "in/"},
            "output": {"container": w.outputs, "prefix": "out/"}, "jobTemplate": TEMPLATE, **overrides}


def _start(w: World, manifest: dict[str, Any] | bytes, authorization: str | None, path: str | None = None
           ) -> RunRef | None:
    blob = path or f"{w.ws.subscription}/{w.ws.resource_group}/{w.ws.workspace}/m-{uuid.uuid4().hex[:8]}.json"
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return scoring_start.start_from_blob(Settings.from_env(), blob, f'"0x{uuid.uuid4().hex[:8]}"', raw, NOW,
                                         authorization)


def _doc(ref: RunRef) -> dict[str, Any]:
    doc = store(Settings.from_env(), storage.T_SCORING_RUNS).get(ref.workspace.child_pk, ref.name)
    assert doc is not None
    return doc.data


@pytest.mark.parametrize("who, code", [
    (None, "AuthenticationFailed"), ("reader", "AuthorizationFailed"), ("stranger", "AuthorizationFailed"),
    ("other-owner", "AuthorizationFailed"), ("submitter", None),
])
def test_a_manifest_acts_for_the_principal_of_its_token(world: World, who: str | None, code: str | None) -> None:
    empty = {"container": world.inputs, "prefix": f"none-{uuid.uuid4().hex[:8]}/"}
    ref = _start(world, _manifest(world, input=empty), world.bearer(who) if who else None)
    assert ref is not None and ref.workspace == world.ws
    data = _doc(ref)
    props = data["properties"]
    if code is None:
        assert props["submittedBy"]["name"].startswith("submitter-")
        # Accepted; there are no input blobs yet, so it ends there, with the reason.
        assert props["state"] == "failed" and props["errors"][-1]["code"] == "NoInputs", props
        assert "tpl-Sec-0c1d" not in json.dumps(data) and "sealed:v1:" in json.dumps(data["internal"])
    else:
        assert props["state"] == "failed" and props["errors"] == [{"code": code, "message": props["stateReason"]}]
        assert data["internal"]["manifest"] is None  # nothing of a refused submitter's manifest is kept
        if code == "AuthorizationFailed":
            assert "Microsoft.BatchAI/workspaces/experiments/jobs/write" in props["stateReason"]


def test_the_path_decides_the_workspace(world: World) -> None:
    elsewhere = _manifest(world, workspace=world.other.workspace)
    as_owner_of_other = _start(world, elsewhere, world.bearer("other-owner"))
    assert as_owner_of_other is not None and as_owner_of_other.workspace == world.ws
    assert _doc(as_owner_of_other)["properties"]["errors"][0]["code"] == "AuthorizationFailed"
    as_submitter = _start(world, elsewhere, world.bearer("submitter"))
    assert as_submitter is not None
    props = _doc(as_submitter)["properties"]
    assert props["errors"][0]["code"] == "InvalidManifest" and "runs in the workspace of its path" in props[
        "stateReason"]
    for other_group in ({"resourceGroup": "elsewhere"}, {"subscriptionId": str(uuid.uuid4())}):
        refused = _start(world, _manifest(world, **other_group), world.bearer("submitter"))
        assert refused is not None and _doc(refused)["properties"]["errors"][0]["code"] == "InvalidManifest"


@pytest.mark.parametrize("path", ["not-a-guid/rg/w/m.json", "{sub}/../w/m.json", "{sub}/rg/w\u212a/m.json",
                                  "w/m.json", "{sub}/rg/w/"])
def test_a_path_that_names_no_workspace_starts_nothing(world: World, path: str) -> None:
    assert _start(world, _manifest(world), world.bearer("submitter"),
                  path.format(sub=world.ws.subscription)) is None


@pytest.mark.parametrize("side", ["input", "output"])
@pytest.mark.parametrize("container", [storage.C_OUTPUTS, storage.C_WHEELHOUSE, storage.C_TRIGGERS,
                                       "azure-webjobs-hosts", "unregistered-data"])
def test_scoring_reaches_only_the_workspace_s_data_containers(world: World, storage_conn: str, side: str,
                                                              container: str) -> None:
    before = {b.name for b in storage.container(storage_conn, storage.C_OUTPUTS).list_blobs()} \
        if container == storage.C_OUTPUTS else set()
    manifest = _manifest(world)
    manifest[side] = {"container": container, "prefix": ""}
    ref = _start(world, manifest, world.bearer("submitter"))
    assert ref is not None
    props = _doc(ref)["properties"]
    assert props["state"] == "failed" and props["errors"][0]["code"] == "DataContainerNotRegistered", props
    assert not [j for j in _jobs(world) if j.startswith(ref.name)]
    if container == storage.C_OUTPUTS:  # no summary (nor anything else) was written there
        assert {b.name for b in storage.container(storage_conn, storage.C_OUTPUTS).list_blobs()} == before


def _jobs(w: World) -> list[str]:
    jobs = store(Settings.from_env(), storage.T_JOBS).scan(pk=w.ws.experiment("e").job_pk)
    return [d.data["name"] for d in jobs]


def test_a_run_stops_when_its_containers_stop_being_its_workspace_s(world: World, storage_conn: str) -> None:
    prefix = f"stop-{uuid.uuid4().hex[:8]}/"
    with contextlib.suppress(ResourceExistsError):
        storage.blob_service(storage_conn).create_container(world.inputs)
    for i in range(3):
        storage.container(storage_conn, world.inputs).upload_blob(f"{prefix}{i}.txt", b"x", overwrite=True)
    manifest = _manifest(world, itemsPerJob=2, input={"container": world.inputs, "prefix": prefix})
    ref = _start(world, manifest, world.bearer("submitter"))
    assert ref is not None and _doc(ref)["properties"]["state"] == "scoring"
    assert sorted(_jobs(world)) >= [sc.chunk_job_name(ref.name, 0, 1), sc.chunk_job_name(ref.name, 1, 1)]
    with client(world.endpoint, world.tokens["owner"]) as owner:
        r = owner.patch(world.ws.arm_id, params=API, json={"properties": {"dataContainers": [world.inputs]}})
        assert r.status_code == 200, r.text
    try:
        assert scoring.advance(Settings.from_env(), ref, NOW) == "failed"
        assert _doc(ref)["properties"]["errors"][-1]["code"] == "DataContainerNotRegistered"
    finally:
        with client(world.endpoint, world.tokens["owner"]) as owner:
            owner.patch(world.ws.arm_id, params=API,
                        json={"properties": {"dataContainers": [world.inputs, world.outputs]}})


def test_a_manifest_over_the_size_limit_is_refused_unread(world: World) -> None:
    big = json.dumps(_manifest(world, padding="x" * sc.MAX_MANIFEST_BYTES)).encode()
    ref = _start(world, big, world.bearer("submitter"))
    assert ref is not None
    props = _doc(ref)["properties"]
    assert props["errors"][0]["code"] == "ManifestTooLarge" and str(sc.MAX_MANIFEST_BYTES) in props["stateReason"]
