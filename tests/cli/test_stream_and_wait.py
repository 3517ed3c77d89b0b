"""`job file stream` reads a growing file through a real SAS download URL with Range requests;
`job wait` turns the job's end into the process exit code."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from azure.mgmt.batchai import models
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from shared.cli.job_files import RangeReader
from shared.cli.jobs import exit_code_of


def test_range_reader_returns_only_what_the_file_gained(storage_conn: str) -> None:
    service = BlobServiceClient.from_connection_string(storage_conn)
    container = service.get_container_client("cli-stream-test")
    if not container.exists():
        container.create_container()
    blob = container.get_blob_client("job/stdout.txt")
    blob.create_append_blob()
    sas = generate_blob_sas(service.account_name, container.container_name, blob.blob_name,
                            account_key=service.credential.account_key, permission=BlobSasPermissions(read=True),
                            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
    url = f"{blob.url}?{sas}"
    with httpx.Client(timeout=10) as http:
        reader = RangeReader(http)
        assert reader.read_new(url) == b""  # empty file: 416, nothing yet
        blob.append_block(b"epoch 1\n")
        assert reader.read_new(url) == b"epoch 1\n"
        assert reader.read_new(url) == b""
        blob.append_block(b"epoch 2\nepoch 3\n")
        assert reader.read_new(url) == b"epoch 2\nepoch 3\n"
        assert reader.offset == len(b"epoch 1\nepoch 2\nepoch 3\n")


def job(state: str, exit_code: int | None) -> models.Job:
    j = models.Job()
    j.execution_state = state
    j.execution_info = models.JobPropertiesExecutionInfo()
    j.execution_info.exit_code = exit_code
    return j


@pytest.mark.parametrize(("state", "code", "expected"), [
    ("succeeded", 0, 0),
    ("failed", 3, 3),
    ("failed", None, 1),  # terminated or never started: no exit code of its own
    ("succeeded", None, 0),
])
def test_wait_exit_code_is_the_jobs(state: str, code: int | None, expected: int) -> None:
    assert exit_code_of(job(state, code)) == expected
