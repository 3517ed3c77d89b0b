"""The one-command local stack: start_stack writes the endpoint file, serves the project's
function_app.py over https with the owner's token (a JWT of the stack's issuer), and stop_stack leaves
no process behind, each part stopped by SIGTERM. A start after a crash restarts only what died, on the
same ports, and says when storage did not stop cleanly."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
from pathlib import Path

import httpx
import jwt
import psutil
from typer.testing import CliRunner

from shared.cli.main import app
from shared.localstack.endpoint import Endpoint
from shared.localstack.stack import read_endpoint, stack_status, start_stack, stop_stack
from shared.localstack.token import LOCAL_API_AUDIENCE, owner_object_id, tenant_of
from tests.polling import wait_until


def test_stack_up_serves_the_api_with_a_token_and_down_leaves_no_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    endpoint = start_stack(state, fixed_ports=False)
    try:
        data = json.loads((state / "local" / "endpoint.json").read_text())
        for key in ("url", "token", "ca_file", "subscription_id", "resource_group", "storage_connection_string",
                    "pids"):
            assert data[key], key
        assert data["subscription_id"] == "00000000-0000-0000-0000-000000000000"
        assert data["resource_group"] == "demo"
        assert stat.S_IMODE((state / "local" / "endpoint.json").stat().st_mode) == 0o600
        claims = jwt.decode(endpoint.token, options={"verify_signature": False})  # verified by the API below
        assert claims["iss"] == endpoint.issuer and claims["aud"] == LOCAL_API_AUDIENCE
        assert claims["oid"] == owner_object_id(tenant_of(endpoint.issuer))
        assert 29 * 86400 < claims["exp"] - claims["iat"] <= 30 * 86400

        tls = ssl.create_default_context(cafile=endpoint.ca_file)
        assert httpx.get(f"{endpoint.url}/healthz", verify=tls).status_code == 200
        workspaces = (f"{endpoint.url}/subscriptions/{endpoint.subscription_id}/resourceGroups/"
                      f"{endpoint.resource_group}/providers/Microsoft.BatchAI/workspaces?api-version=2018-05-01")
        denied = httpx.get(workspaces, verify=tls)
        assert denied.status_code == 401, denied.text
        allowed = httpx.get(workspaces, verify=tls, headers={"Authorization": f"Bearer {endpoint.token}"})
        assert allowed.status_code == 200, allowed.text
        discovery = httpx.get(f"{endpoint.issuer}/.well-known/openid-configuration", verify=tls).json()
        assert discovery["issuer"] == endpoint.issuer and discovery["jwks_uri"].startswith("https://127.0.0.1:")

        again = start_stack(state, fixed_ports=False)  # already up: the same stack
        assert again.pids == endpoint.pids and again.token == endpoint.token
        assert stack_status(state)["running"]
        host = psutil.Process(endpoint.pids["host"])
        family = [endpoint.pids["azurite"], endpoint.pids["emulator"], host.pid,
                  *(c.pid for c in host.children(recursive=True))]
    finally:
        stop_stack(state)
    assert not [pid for pid in family if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    after = read_endpoint(state)
    assert after is not None and after.pids == {} and after.token == endpoint.token
    assert not stack_status(state)["running"]


def api_answers(endpoint: Endpoint) -> bool:
    workspaces = (f"{endpoint.url}/subscriptions/{endpoint.subscription_id}/resourceGroups/"
                  f"{endpoint.resource_group}/providers/Microsoft.BatchAI/workspaces?api-version=2018-05-01")
    try:
        return httpx.get(workspaces, verify=ssl.create_default_context(cafile=endpoint.ca_file), timeout=10,
                         headers={"Authorization": f"Bearer {endpoint.token}"}).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_crashed_host_is_restarted_alone_and_every_part_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    endpoint = start_stack(state, fixed_ports=False)
    try:
        os.kill(endpoint.pids["host"], signal.SIGKILL)
        wait_until(lambda: not stack_status(state)["running"], 30, what="the host to be seen dead")
        again = start_stack(state, fixed_ports=False)
        assert again.pids["host"] != endpoint.pids["host"]
        assert {n: again.pids[n] for n in ("azurite", "emulator")} == \
            {n: endpoint.pids[n] for n in ("azurite", "emulator")}  # storage and the local cloud kept running
        assert again.ports == endpoint.ports and again.notices == []
        assert api_answers(again)
    finally:
        report = stop_stack(state)
    assert report == {"host": True, "emulator": True, "azurite": True}  # no SIGKILL was needed


def test_a_crashed_storage_is_restarted_on_its_ports_and_reported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    endpoint = start_stack(state, fixed_ports=False)
    try:
        os.kill(endpoint.pids["azurite"], signal.SIGKILL)
        wait_until(lambda: not stack_status(state)["running"], 30, what="storage to be seen dead")
        up = CliRunner().invoke(app, ["--state-dir", str(state), "stack", "up"])  # as an operator restarts it
        assert up.exit_code == 0, (up.stdout, up.stderr, up.exception)
        again = read_endpoint(state)
        assert again is not None
        warning = " ".join(up.stderr.split())  # the console wraps long lines
        assert "warning: Storage did not stop cleanly" in warning and "every 5 s" in warning, up.stderr
        assert again.pids["azurite"] != endpoint.pids["azurite"]
        assert again.pids["host"] == endpoint.pids["host"] and again.ports == endpoint.ports
        # the endpoint file keeps what the start found
        assert len(again.notices) == 1 and "Storage did not stop cleanly" in again.notices[0]
        assert f"pid {endpoint.pids['azurite']}" in again.notices[0]
        wait_until(lambda: api_answers(again), 60, what="the running host to reach the restarted storage")
    finally:
        assert stop_stack(state)["azurite"] is True
    clean = start_stack(state, fixed_ports=False)
    try:
        assert clean.notices == []  # it stopped cleanly this time
    finally:
        stop_stack(state)
