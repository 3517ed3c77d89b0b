"""No secret in plain text anywhere the service writes or answers: representative flows on the local
stack (clusters with passwords, setup secrets, mount keys and mount commands; jobs with secrets,
registry passwords and mount keys, one of them run on a node; a file server's password; an accepted
and a refused queue submission; a scoring run whose job template carries a secret), each with a
distinctive value, then every table, every queue (peeked), every blob and its metadata, the host's
logs and the API's answers are searched for those values and the submitters' token, and none is
found. The one place exempt is the trigger container, where users upload manifests (this test's own,
with a secret in its template and the token in its metadata): the service only reads it."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobProperties

from shared.adapters import storage
from shared.adapters.secret_box import SecretBox
from tests.ingress.conftest import cluster_body, job_body
from tests.polling import wait_until
from tests.scoring.conftest import ScoringStack

pytestmark = pytest.mark.slow

WS, EXP = "scan", "e"
SECRET_FIELDS = ("admin", "setup", "afskey", "mount", "blobkey", "admin2", "setup2", "job", "registry", "jobkey",
                 "fs", "q-accepted", "q-refused", "q-registry", "q-mount", "template")


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    return {name: f"PLAIN-{name}-{uuid.uuid4().hex[:12]}" for name in SECRET_FIELDS}


def _ok(r: Any) -> Any:
    assert r.status_code in (200, 201, 202), r.text
    return r


def _flows(s: ScoringStack, v: dict[str, str]) -> tuple[list[str], list[str]]:
    """Run the flows; (API answers, names of the blobs this test uploaded as a user)."""
    ws = s.ws_path(WS)
    base = s.endpoint["url"] + ws
    q = {"api-version": "2018-05-01"}
    answers: list[str] = []
    answers.append(_ok(s.http.put(base, params=q, json={"location": "local", "properties": {
        "dataContainers": ["scan-in", "scan-out"]}})).text)
    _ok(s.http.put(f"{base}/experiments/{EXP}", params=q, json={}))
    idle = cluster_body(0, userAccountSettings={"adminUserName": "u", "adminUserPassword": v["admin"]}, nodeSetup={
        "setupTask": {"commandLine": "true", "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/s",
                      "secrets": [{"name": "SETUP", "value": v["setup"]}]},
        "mountVolumes": {
            "azureFileShares": [{"accountName": "acct", "azureFileUrl": "https://acct.file.core.windows.net/s",
                                 "relativeMountPath": "afs", "credentials": {"accountKey": v["afskey"]}}],
            "azureBlobFileSystems": [{"accountName": "acct", "containerName": "c", "relativeMountPath": "b",
                                      "credentials": {"accountKey": v["blobkey"]}}],
            "unmanagedFileSystems": [{"mountCommand": f"mount -o pw={v['mount']}", "relativeMountPath": "u"}]}})
    answers.append(_ok(s.http.put(f"{base}/clusters/idle", params=q, json=idle)).text)
    run = cluster_body(1, userAccountSettings={"adminUserName": "u", "adminUserPassword": v["admin2"]}, nodeSetup={
        "setupTask": {"commandLine": "true", "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/s",
                      "secrets": [{"name": "SETUP", "value": v["setup2"]}]}})
    answers.append(_ok(s.http.put(f"{base}/clusters/run", params=q, json=run)).text)
    s.idle_nodes(WS, "run", 1)
    ran = job_body(f"{ws}/clusters/run", secrets=[{"name": "JOB_SECRET", "value": v["job"]}])
    answers.append(_ok(s.http.put(f"{base}/experiments/{EXP}/jobs/ran", params=q, json=ran)).text)
    queued = job_body(f"{ws}/clusters/idle", containerSettings={"imageSourceRegistry": {
        "image": "busybox", "serverUrl": "r.example.com", "credentials": {"username": "u", "password": v["registry"]}}},
        mountVolumes={"azureFileShares": [{"accountName": "acct", "azureFileUrl": "https://acct.file.core.windows.net/s",
                                           "relativeMountPath": "j", "credentials": {"accountKey": v["jobkey"]}}]})
    answers.append(_ok(s.http.put(f"{base}/experiments/{EXP}/jobs/queued", params=q, json=queued)).text)
    answers.append(_ok(s.http.put(f"{base}/fileServers/fs", params=q, json={"properties": {
        "vmSize": "STANDARD_D1_V2", "dataDisks": {"diskSizeInGB": 1, "diskCount": 1,
                                                   "storageAccountType": "Standard_LRS"},
        "sshConfiguration": {"userAccountSettings": {"adminUserName": "u", "adminUserPassword": v["fs"]}}}})).text)
    submissions = storage.queue(s.endpoint["storage_connection_string"], storage.Q_SUBMISSIONS)
    accepted = {"workspace": WS, "experiment": EXP, "jobName": "fromqueue",
                "authorization": f"Bearer {s.endpoint['token']}",
                **job_body(f"{ws}/clusters/run", secrets=[{"name": "Q", "value": v["q-accepted"]}])}
    submissions.send_message(json.dumps(accepted))
    refused = {"workspace": WS, "experiment": EXP, "jobName": "refused", "correlationId": "scan-refused",
               **job_body(f"{ws}/clusters/run", secrets=[{"name": "Q", "value": v["q-refused"]}],
                          containerSettings={"imageSourceRegistry": {"image": "i", "credentials": {
                              "username": "u", "password": v["q-registry"]}}},
                          mountVolumes={"unmanagedFileSystems": [{"mountCommand": f"m {v['q-mount']}",
                                                                  "relativeMountPath": "u"}]})}
    submissions.send_message(json.dumps(refused))  # no token: refused, recorded redacted
    s.upload_inputs("scan-in", {f"in/{i}.txt": f"item {i}" for i in range(3)})
    template = {"properties": {"stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/logs",
                               "customToolkitSettings": {"commandLine": "true"},
                               "secrets": [{"name": "TEMPLATE", "value": v["template"]}]}}
    manifest = {"cluster": "run", "experiment": EXP, "input": {"container": "scan-in", "prefix": "in/"},
                "output": {"container": "scan-out", "prefix": "out/"}, "itemsPerJob": 2, "jobTemplate": template}
    run_id = s.upload_manifest(WS, "scan", manifest)
    assert s.wait_job(WS, EXP, "ran").execution_state == "succeeded"
    wait_until(lambda: any(j.name == "fromqueue" for j in s.client.jobs.list_by_experiment(s.rg, WS, EXP)), 120,
               what="the queued submission's job")
    assert s.wait_job(WS, EXP, "fromqueue").execution_state == "succeeded"
    assert s.wait_run(WS, run_id)["properties"]["state"] == "succeeded"
    rejected = f"/subscriptions/{s.sub}/resourceGroups/{s.rg}/providers/Microsoft.BatchAI/rejectedSubmissions"
    wait_until(lambda: [r for r in s.api(rejected).json()["value"]
                        if r["properties"]["correlationId"] == "scan-refused"], 60, what="the refusal")
    for path in (ws, f"{ws}/clusters", f"{ws}/clusters/idle", f"{ws}/clusters/run", f"{ws}/experiments/{EXP}/jobs",
                 f"{ws}/experiments/{EXP}/jobs/ran", f"{ws}/experiments/{EXP}/jobs/queued",
                 f"{ws}/experiments/{EXP}/jobs/fromqueue", f"{ws}/fileServers", f"{ws}/fileServers/fs",
                 f"{ws}/batchScoringRuns", f"{ws}/batchScoringRuns/{run_id}", rejected):
        answers.append(_ok(s.api(path)).text)
    return answers, [s.manifest_blob(WS, "scan")]


def _texts(content: str) -> list[str]:
    """A queue message as stored and, when it is base64, decoded."""
    try:
        return [content, base64.b64decode(content, validate=True).decode("utf-8", "replace")]
    except (binascii.Error, ValueError):
        return [content]


def _stored(conn: str, exempt: set[str]) -> dict[str, str]:
    """Where -> text, of every table entity, queue message, blob and blob metadata of the account."""
    found: dict[str, str] = {}
    for table in storage.table_service(conn).list_tables():
        rows = storage.table(conn, table.name).list_entities()
        found[f"table {table.name}"] = json.dumps([dict(r) for r in rows], default=str)
    for queue in storage.queue_service(conn).list_queues():
        peeked = storage.queue_service(conn).get_queue_client(queue.name).peek_messages(max_messages=32)
        found[f"queue {queue.name}"] = "\n".join(t for m in peeked for t in _texts(m.content))
    service = storage.blob_service(conn)
    blobs = [(container.name, blob) for container in service.list_containers() if container.name not in exempt
             for blob in service.get_container_client(container.name).list_blobs(include=["metadata"])]

    def text_of(container: str, blob: BlobProperties) -> str:
        data = service.get_blob_client(container, blob.name).download_blob().readall()
        return data.decode("utf-8", "replace") + json.dumps(blob.metadata)

    with ThreadPoolExecutor(max_workers=8) as pool:  # hundreds of blobs: one at a time takes minutes under load
        texts = pool.map(lambda item: text_of(*item), blobs)
        for (container, blob), text in zip(blobs, texts, strict=True):
            found[f"blob {container}/{blob.name}"] = text
    return found


def test_no_secret_is_stored_logged_or_answered_in_plain_text(local_stack: dict[str, Any],
                                                              values: dict[str, str]) -> None:
    s = ScoringStack(local_stack)
    answers, uploaded = _flows(s, values)
    conn = local_stack["storage_connection_string"]
    assert all(s.blobs.get_blob_client(storage.C_TRIGGERS, name).exists() for name in uploaded)
    places = _stored(conn, {storage.C_TRIGGERS})
    for i, answer in enumerate(answers):
        places[f"answer {i}"] = answer
    for log in sorted(Path(local_stack["state_dir"], "logs").rglob("*")):
        if log.is_file():
            places[f"log {log.name}"] = log.read_text(errors="replace")
    assert any(SecretBox.is_sealed(text) or "sealed:v1:" in text for text in places.values())
    wanted = {**values, "token": str(local_stack["token"])}
    leaks = {(name, where) for where, text in places.items() for name, value in wanted.items() if value in text}
    assert not leaks, sorted(leaks)
