"""Validation rules, table-driven: each bad request names its field in `target` and the message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.domain import resources, validation
from shared.domain.errors import ApiError

CLUSTER = {"properties": {"vmSize": "STANDARD_NC6", "userAccountSettings": {"adminUserName": "me"},
                          "scaleSettings": {"manual": {"targetNodeCount": 1}}}}
JOB = {"properties": {"cluster": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/w"
                                        "/clusters/c"},
                      "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/out",
                      "customToolkitSettings": {"commandLine": "echo hi"}}}


def patched(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    node = body
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is DELETE:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return body


DELETE = object()

CLUSTER_CASES = [
    ("properties.vmSize", DELETE, "properties.vmSize"),
    ("properties.userAccountSettings.adminUserName", DELETE, "properties.userAccountSettings.adminUserName"),
    ("properties.vmPriority", "spot", "properties.vmPriority"),
    ("properties.scaleSettings", {"manual": {"targetNodeCount": 1}, "autoScale": {"minimumNodeCount": 0,
                                                                                 "maximumNodeCount": 2}},
     "properties.scaleSettings"),
    ("properties.scaleSettings", {}, "properties.scaleSettings"),
    ("properties.scaleSettings", {"autoScale": {"minimumNodeCount": 3, "maximumNodeCount": 2}},
     "properties.scaleSettings.autoScale.minimumNodeCount"),
    ("properties.scaleSettings", {"autoScale": {"minimumNodeCount": 0}},
     "properties.scaleSettings.autoScale.maximumNodeCount"),
    ("properties.scaleSettings", {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 2, "initialNodeCount": 5}},
     "properties.scaleSettings.autoScale.initialNodeCount"),
    ("properties.scaleSettings", {"manual": {"targetNodeCount": -1}},
     "properties.scaleSettings.manual.targetNodeCount"),
    ("properties.scaleSettings", {"manual": {"targetNodeCount": 1, "nodeDeallocationOption": "kill"}},
     "properties.scaleSettings.manual.nodeDeallocationOption"),
    ("properties.scaleSettings", {"manual": {"targetNodeCount": "two"}},
     "properties.scaleSettings.manual.targetNodeCount"),
    ("properties.nodeSetup", {"mountVolumes": {"azureFileShares": [{"accountName": "a", "azureFileUrl": "u",
                                                                    "credentials": {}, "relativeMountPath": "../x"}]}},
     "properties.nodeSetup.mountVolumes.azureFileShares[0].relativeMountPath"),
    ("properties.nodeSetup", {"mountVolumes": {"azureFileShares": [{"accountName": "a", "azureFileUrl": "u",
                                                                    "relativeMountPath": "x"}]}},
     "properties.nodeSetup.mountVolumes.azureFileShares[0].credentials"),
    ("properties.nodeSetup", {"setupTask": {"commandLine": "x"}}, "properties.nodeSetup.setupTask.stdOutErrPathPrefix"),
    ("properties", "not an object", "properties"),
]


@pytest.mark.parametrize(("path", "value", "target"), CLUSTER_CASES)
def test_cluster_rejects(path: str, value: Any, target: str) -> None:
    with pytest.raises(ApiError) as e:
        validation.cluster_create(patched(CLUSTER, path, value))
    assert e.value.status == 400
    assert e.value.target == target
    assert target in e.value.message


JOB_CASES = [
    ("properties.cluster", DELETE, "properties.cluster"),
    ("properties.cluster", {}, "properties.cluster.id"),
    ("properties.stdOutErrPathPrefix", DELETE, "properties.stdOutErrPathPrefix"),
    ("properties.customToolkitSettings", DELETE, "properties"),
    ("properties.pyTorchSettings", {"pythonScriptFilePath": "train.py"}, "properties"),
    ("properties.schedulingPriority", "urgent", "properties.schedulingPriority"),
    ("properties.nodeCount", 0, "properties.nodeCount"),
    ("properties.nodeCount", "1", "properties.nodeCount"),
    ("properties.caffe2Settings", {}, "properties.caffe2Settings.pythonScriptFilePath"),
    ("properties.outputDirectories", [{"id": "OUT", "pathPrefix": "p"}, {"id": "out", "pathPrefix": "q"}],
     "properties.outputDirectories[1].id"),
    ("properties.outputDirectories", [{"id": "stdouterr", "pathPrefix": "p"}], "properties.outputDirectories[0].id"),
    ("properties.outputDirectories", [{"id": "bad id", "pathPrefix": "p"}], "properties.outputDirectories[0].id"),
    ("properties.outputDirectories", [{"id": "OUT"}], "properties.outputDirectories[0].pathPrefix"),
    ("properties.secrets", [{"name": "A"}], "properties.secrets[0]"),
    ("properties.environmentVariables", [{"name": "A"}], "properties.environmentVariables[0].value"),
    ("properties.constraints", {"maxWallClockTime": "soon"}, "properties.constraints.maxWallClockTime"),
    ("properties.containerSettings", {"imageSourceRegistry": {}},
     "properties.containerSettings.imageSourceRegistry.image"),
    ("properties.containerSettings", {"imageSourceRegistry": {"image": "x", "credentials": {"password": "p"}}},
     "properties.containerSettings.imageSourceRegistry.credentials.username"),
]


@pytest.mark.parametrize(("path", "value", "target"), JOB_CASES)
def test_job_rejects(path: str, value: Any, target: str) -> None:
    with pytest.raises(ApiError) as e:
        validation.job_create(patched(JOB, path, value))
    assert e.value.status == 400
    assert e.value.target == target
    assert target in e.value.message


def test_job_defaults_and_tool_type() -> None:
    props = validation.job_create(JOB)
    assert props["nodeCount"] == 1
    assert props["schedulingPriority"] == "normal"
    assert props["constraints"] == {"maxWallClockTime": "P7D"}
    assert validation.tool_type(props) == "custom"
    dotnet = validation.job_create(patched(JOB, "properties.constraints", {"maxWallClockTime": "1.02:00:00"}))
    assert dotnet["constraints"]["maxWallClockTime"] == "P1DT2H"


def test_job_larger_than_autoscale_maximum() -> None:
    with pytest.raises(ApiError) as e:
        validation.job_fits_cluster(3, {"scaleSettings": {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 2}}})
    assert e.value.target == "properties.nodeCount" and "maximumNodeCount is 2" in e.value.message
    validation.job_fits_cluster(3, {"scaleSettings": {"manual": {"targetNodeCount": 1}}})


def test_cluster_defaults() -> None:
    props = validation.cluster_create(patched(CLUSTER, "properties.scaleSettings", DELETE))
    assert props["vmPriority"] == "dedicated"
    assert props["scaleSettings"] == {"manual": {"targetNodeCount": 0, "nodeDeallocationOption": "requeue"}}
    assert props["virtualMachineConfiguration"]["imageReference"]["publisher"] == "Canonical"
    auto = validation.cluster_create(patched(CLUSTER, "properties.scaleSettings",
                                             {"autoScale": {"minimumNodeCount": 0, "maximumNodeCount": 4}}))
    assert auto["scaleSettings"]["autoScale"]["initialNodeCount"] == 0


@pytest.mark.parametrize(("parameter", "value", "ok"), [
    ("workspaceName", "a", True), ("workspaceName", "a-b_c9", True), ("workspaceName", "x" * 64, True),
    ("workspaceName", "x" * 65, False), ("workspaceName", "", False), ("workspaceName", "a.b", False),
    ("workspaceName", "a b", False), ("resourceGroupName", "rg.with.dots", True),
    ("resourceGroupName", "r" * 91, False),
    ("jobName", "j/k", False),
])
def test_names(parameter: str, value: str, ok: bool) -> None:
    if ok:
        validation.check_name(parameter, value)
    else:
        with pytest.raises(ApiError) as e:
            validation.check_name(parameter, value)
        assert e.value.status == 400 and e.value.target == parameter


@pytest.mark.parametrize(("value", "expected"), [(None, 1000), ("1", 1), ("1000", 1000), ("0", None), ("1001", None),
                                                  ("ten", None)])
def test_max_results(value: str | None, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(ApiError) as e:
            validation.max_results(value)
        assert e.value.target == "maxresults"
    else:
        assert validation.max_results(value) == expected


def test_redact_removes_every_secret() -> None:
    doc = {"properties": {
        "userAccountSettings": {"adminUserName": "u", "adminUserPassword": "p"},
        "secrets": [{"name": "A", "value": "s1"}, {"name": "B", "valueSecretReference": {"secretUrl": "x"}}],
        "environmentVariables": [{"name": "C", "value": "visible"}],
        "mountVolumes": {"azureFileShares": [{"credentials": {"accountKey": "k"}}]},
        "containerSettings": {"imageSourceRegistry": {"credentials": {"username": "u", "password": "p"}}},
    }}
    out = resources.redact(doc)["properties"]
    assert out["userAccountSettings"] == {"adminUserName": "u"}
    assert out["secrets"] == [{"name": "A"}, {"name": "B"}]
    assert out["environmentVariables"] == [{"name": "C", "value": "visible"}]
    assert out["mountVolumes"]["azureFileShares"][0]["credentials"] == {}
    assert out["containerSettings"]["imageSourceRegistry"]["credentials"] == {"username": "u"}
