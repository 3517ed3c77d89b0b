"""Who may do what, on the whole local stack: `batchai stack token` and `batchai role assignment ...` and
their effects on what principals may then do through the API, the SDK and the CLI."""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from azure.mgmt.batchai import BatchAI, models
from typer.testing import CliRunner, Result

from shared.cli.context import StaticTokenCredential
from shared.cli.main import app
from shared.domain import rbac
from shared.domain.principals import USER, local_object_id
from shared.emulator.issuer import Issuer
from shared.localstack.token import LOCAL_API_AUDIENCE, tenant_of
from tests.api.conftest import API
from tests.authz.conftest import job_body, tampered

Cli = Callable[..., Result]
ASSIGNMENTS = "/providers/Microsoft.Authorization/roleAssignments"


@pytest.fixture(scope="module")
def cli(local_stack: dict[str, Any]) -> Cli:
    runner = CliRunner()

    def run(*args: str, check: bool = True, endpoint: Path | None = None) -> Result:
        where = ["--endpoint", str(endpoint)] if endpoint else []
        result = runner.invoke(app, ["--state-dir", str(local_stack["state_dir"]), *where, *args])
        if check:
            assert result.exit_code == 0, f"batchai {' '.join(args)}: {result.exit_code}\n{result.stdout}\n" \
                                          f"{result.stderr}\n{result.exception!r}"
        return result

    return run


@pytest.fixture(scope="module")
def stack(local_stack: dict[str, Any], cli: Cli) -> dict[str, Any]:
    """Workspaces A and B, made by the stack's owner through the CLI (the official SDK, endpoint.json's token)."""
    run = uuid.uuid4().hex[:6]
    names = {"a": f"a-{run}", "b": f"b-{run}", "run": run}
    for ws in (names["a"], names["b"]):
        cli("workspace", "create", "-n", ws, "-l", "eastus")
        cli("experiment", "create", "-w", ws, "-n", "e")
    base = (f"/subscriptions/{local_stack['subscription_id']}/resourceGroups/{local_stack['resource_group']}"
            f"/providers/Microsoft.BatchAI/workspaces")
    return {**local_stack, **names, "a_id": f"{base}/{names['a']}", "b_id": f"{base}/{names['b']}"}


def http(stack: dict[str, Any], token: str | None) -> httpx.Client:
    return httpx.Client(base_url=stack["url"], verify=ssl.create_default_context(cafile=stack["ca_file"]),
                        headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=30)


def token_of(cli: Cli, name: str, *groups: str) -> str:
    args = [a for g in groups for a in ("--group", g)]
    return cli("stack", "token", "--principal", name, *args).stdout.strip()


def endpoint_with(stack: dict[str, Any], tmp_path: Path, **changes: str) -> Path:
    path = tmp_path / f"endpoint-{uuid.uuid4().hex[:6]}.json"
    data = json.loads((Path(stack["state_dir"]) / "local" / "endpoint.json").read_text())
    path.write_text(json.dumps({**data, **changes}))
    return path


def test_stack_token_is_an_entra_style_token_of_the_stacks_issuer(stack: dict[str, Any], cli: Cli) -> None:
    out = json.loads(cli("stack", "token", "--principal", "Carol", "--group", "team", "--lifetime", "600",
                         "-o", "json").stdout)
    tenant = tenant_of(stack["issuer"])
    assert out["tokenType"] == "Bearer" and out["tenant"] == tenant
    assert out["objectId"] == local_object_id(tenant, USER, "carol")
    claims = jwt.decode(out["accessToken"], options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["oid"], claims["name"]) == \
        (stack["issuer"], LOCAL_API_AUDIENCE, out["objectId"], "Carol")
    assert claims["exp"] - claims["iat"] == 600 == out["expires_on"] - claims["iat"]
    assert claims["groups"] == [local_object_id(tenant, "group", "team")]


def test_stack_token_refuses_an_endpoint_of_another_issuer(stack: dict[str, Any], cli: Cli, tmp_path: Path) -> None:
    elsewhere = endpoint_with(stack, tmp_path, issuer="https://login.microsoftonline.com/tenant/v2.0")
    refused = cli("stack", "token", "--principal", "x", check=False, endpoint=elsewhere)
    assert refused.exit_code == 1 and "is not the local stack's" in refused.stderr


def test_a_reader_of_a_reads_a_and_nothing_else(stack: dict[str, Any], cli: Cli) -> None:
    alice = f"alice-{stack['run']}"
    created = json.loads(cli("role", "assignment", "create", "--assignee", alice, "--role", "Reader",
                             "--scope", stack["a_id"], "-o", "json").stdout)
    assert created["roleDefinitionName"] == "Reader" and created["scope"] == stack["a_id"]
    with http(stack, token_of(cli, alice)) as reader:
        assert reader.get(f"{stack['a_id']}?{API}").status_code == 200
        refused = reader.put(f"{stack['a_id']}/experiments/e/jobs/j?{API}", json=job_body(stack["a_id"]))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"
        assert f"action '{rbac.JOBS_WRITE}'" in refused.json()["error"]["message"]
        sub = f"/subscriptions/{stack['subscription_id']}"
        for listing in (f"{sub}/providers/Microsoft.BatchAI/workspaces",
                        f"{sub}/resourceGroups/{stack['resource_group']}/providers/Microsoft.BatchAI/workspaces"):
            seen = {w["name"] for w in reader.get(f"{listing}?{API}").json()["value"]}
            assert stack["a"] in seen and stack["b"] not in seen, seen
        for hidden in (stack["b_id"], f"{stack['b_id']}/experiments", f"{stack['b_id']}/clusters"):
            assert reader.get(f"{hidden}?{API}").status_code == 403
        scopes = {a["properties"]["scope"] for a in reader.get(f"{sub}{ASSIGNMENTS}?api-version=2022-04-01").json()[
            "value"]}
        assert scopes == {stack["a_id"]}
    listed = json.loads(cli("role", "assignment", "list", "--scope", stack["a_id"], "--assignee", alice,
                            "-o", "json").stdout)
    assert [(a["name"], a["roleDefinitionName"]) for a in listed] == [(created["name"], "Reader")]
    table = cli("role", "assignment", "list", "--scope", stack["a_id"]).stdout
    assert created["principalId"] in table and "Reader" in table

    cli("role", "assignment", "delete", "--assignee", alice, "--role", "Reader", "--scope", stack["a_id"])
    with http(stack, token_of(cli, alice)) as reader:
        assert reader.get(f"{stack['a_id']}?{API}").status_code == 403
    assert json.loads(cli("role", "assignment", "list", "--assignee", alice, "-o", "json").stdout) == []


def test_a_group_role_reaches_its_members_through_the_cli(stack: dict[str, Any], cli: Cli, tmp_path: Path) -> None:
    team = f"team-{stack['run']}"
    created = json.loads(cli("role", "assignment", "create", "--assignee", team, "--assignee-principal-type",
                             "Group", "--role", "BatchAI Job Submitter", "--scope", stack["a_id"], "-o",
                             "json").stdout)
    member = endpoint_with(stack, tmp_path, token=token_of(cli, f"bob-{stack['run']}", team))
    outsider = endpoint_with(stack, tmp_path, token=token_of(cli, f"eve-{stack['run']}"))
    assert json.loads(cli("experiment", "list", "-w", stack["a"], "-o", "json", endpoint=member).stdout)[0][
        "name"] == "e"
    refused = cli("experiment", "create", "-w", stack["a"], "-n", "not-mine", check=False, endpoint=member)
    assert refused.exit_code == 1 and "AuthorizationFailed" in refused.stderr and rbac.EXPERIMENTS_WRITE in \
        refused.stderr
    assert "AuthorizationFailed" in cli("workspace", "show", "-n", stack["b"], check=False, endpoint=member).stderr
    assert "AuthorizationFailed" in cli("experiment", "list", "-w", stack["a"], check=False,
                                        endpoint=outsider).stderr
    denied = cli("role", "assignment", "create", "--assignee", "x", "--role", "Owner", "--scope", stack["a_id"],
                 check=False, endpoint=member)
    assert denied.exit_code == 1 and "AuthorizationFailed" in denied.stderr
    cli("role", "assignment", "delete", "--ids", created["id"])
    assert "AuthorizationFailed" in cli("experiment", "list", "-w", stack["a"], check=False, endpoint=member).stderr


def test_foreign_and_forged_tokens_get_401(stack: dict[str, Any], tmp_path: Path) -> None:
    owner = stack["token"]
    claims = {k: v for k, v in jwt.decode(owner, options={"verify_signature": False}).items()
              if k not in ("iss", "iat", "nbf", "exp")}
    other = Issuer.load_or_create(tmp_path / "other", "https://127.0.0.1:9/99999999-0000-4000-8000-000000000000/v2.0",
                                  "99999999-0000-4000-8000-000000000000")
    for token, code in ((other.sign(claims), "InvalidAuthenticationTokenTenant"),
                        (tampered(owner), "InvalidAuthenticationToken"),
                        (other.sign({**claims, "iss": stack["issuer"]}), "InvalidAuthenticationToken")):
        with http(stack, token) as caller:
            r = caller.get(f"{stack['a_id']}?{API}")
        assert r.status_code == 401 and r.json()["error"]["code"] == code, r.text


def test_the_official_sdk_with_the_endpoint_files_token_works_as_before(stack: dict[str, Any]) -> None:
    claims = jwt.decode(stack["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] >= 30 * 86400  # the owner's token: valid for 30 days from its issue
    client = BatchAI(StaticTokenCredential(stack["token"]), stack["subscription_id"], base_url=stack["url"],
                     connection_verify=stack["ca_file"], polling_interval=0.5)
    group = stack["resource_group"]
    names = {w.name for w in client.workspaces.list_by_resource_group(group)}
    assert {stack["a"], stack["b"]} <= names
    exp = client.experiments.begin_create(group, stack["b"], f"sdk-{stack['run']}").result()
    assert exp.provisioning_state == "succeeded"
    client.experiments.begin_delete(group, stack["b"], exp.name).result()
    assert [e.name for e in client.experiments.list_by_workspace(group, stack["b"])] == ["e"]
    assert isinstance(client.usages.list("eastus").next(), models.Usage)
