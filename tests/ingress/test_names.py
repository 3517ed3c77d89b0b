"""Names and ids on the request path, tried as an attacker would: a trailing newline, Unicode look-alikes,
subscription ids that are not GUIDs (a control character among them), and a resource group of '..'
that once let a file server delete remove a directory outside the state directory."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from shared.domain import validation
from shared.domain.errors import ApiError
from tests.ingress.conftest import API, PROVIDER, error_of, put, workspace, ws_path


@pytest.mark.parametrize("parameter, name", [
    ("jobName", "job\n"), ("workspaceName", "ws\n"), ("resourceGroupName", "rg\n"), ("experimentName", "\u212aws"),
    ("clusterName", "\u0661"), ("jobName", "x" * 65), ("jobName", ""), ("resourceGroupName", "..")])
def test_names_are_ascii_and_matched_whole(parameter: str, name: str) -> None:
    """Where names arrive outside a URL path (queue messages, manifests, ids in bodies), only the name
    rule stands between a trailing newline or a look-alike and the tables."""
    with pytest.raises(ApiError) as refused:
        validation.check_name(parameter, name)
    assert refused.value.status == 400 and refused.value.code == "InvalidParameter"


def test_a_newline_in_a_path_name_creates_nothing(http: httpx.Client, sub: str) -> None:
    r = put(http, ws_path(sub, "ws%0A"), {"location": "local"})
    assert r.status_code in (400, 404), r.text
    assert http.get(f"/subscriptions/{sub}/{PROVIDER}/workspaces", params=API).json()["value"] == []


def test_a_unicode_look_alike_never_reaches_the_resource_it_lowercases_to(http: httpx.Client, sub: str) -> None:
    workspace(http, sub, "kws")
    assert put(http, ws_path(sub, "kws"), {"location": "local", "tags": {"owner": "k"}}).status_code == 200
    kelvin = "\u212aws"  # KELVIN SIGN + "ws": lower() gives "kws"
    for name in (kelvin, "\u0138ws", "k\u0461s"):
        r = put(http, ws_path(sub, name), {"location": "local", "tags": {"owner": "intruder"}})
        assert r.status_code == 400, (name, r.text)
        assert http.get(ws_path(sub, name), params=API).status_code == 400
    assert http.get(ws_path(sub, "kws"), params=API).json()["tags"] == {"owner": "k"}


@pytest.mark.parametrize("subscription", ["not-a-guid", "00000000-0000-0000-0000-00000000000", "%01", "%7F",
                                          "0000000%C2%B2-0000-0000-0000-000000000000", "%2E%2E"])
def test_a_subscription_id_must_be_a_guid(http: httpx.Client, subscription: str) -> None:
    for path in (f"/subscriptions/{subscription}/{PROVIDER}/workspaces",
                 f"/subscriptions/{subscription}/resourceGroups/demo/{PROVIDER}/workspaces/w",
                 f"/subscriptions/{subscription}/{PROVIDER}/locations/local/usages"):
        r = http.get(path, params=API)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert error_of(r)["code"] == "InvalidSubscriptionId", r.text


@pytest.mark.parametrize("group", ["%2E%2E", ".", "rg.", "r%01g", "r%0A", "r/g", "\u212a", "x" * 91])
def test_a_resource_group_name_follows_arm_s_rule(http: httpx.Client, sub: str, group: str) -> None:
    r = http.put(f"/subscriptions/{sub}/resourceGroups/{group}/{PROVIDER}/workspaces/w", params=API,
                 json={"location": "local"})
    assert r.status_code in (400, 404), r.text  # 404: a '/' makes it another route, which does not exist
    assert error_of(r)["code"] in ("InvalidParameter", "NotFound")


def test_dot_dot_path_ids_cannot_reach_outside_the_state_directory(http: httpx.Client) -> None:
    state = Path(os.environ["BATCHAI_STATE_DIR"])
    # <state>/fileservers/<sub>/<rg>/<ws>/<name> with sub = rg = '..' is <state>/../<ws>/<name>
    victim = state.parent / "victimws" / "victimfs"
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "keep.txt").write_text("precious")
    base = f"/subscriptions/%2E%2E/resourceGroups/%2E%2E/{PROVIDER}/workspaces/victimws"
    server = {"properties": {"vmSize": "STANDARD_D1_V2", "dataDisks": {"diskSizeInGB": 1, "diskCount": 1,
                                                                       "storageAccountType": "Standard_LRS"},
                             "sshConfiguration": {"userAccountSettings": {"adminUserName": "u"}}}}
    answers = [put(http, base, {"location": "local"}).status_code,
               put(http, f"{base}/fileServers/victimfs", server).status_code,
               http.delete(f"{base}/fileServers/victimfs", params=API).status_code]
    assert (victim / "keep.txt").exists(), f"a directory outside the state directory was removed ({answers})"
    assert answers == [400, 400, 400]
