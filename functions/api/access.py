"""Who may call which route: one rule per route (method and path template), checked by one dependency.

A rule names the route's action (Batch AI's action strings, `shared.domain.rbac`) and the scope it is
checked over, a template of the route's path parameters (the resource the route addresses; for a
collection, its parent). Lists name how each item's scope is found: the caller sees only the items
it may read. Subscription- and resource-group-wide lists are filtered and never refused (ARM does
the same); lists under a workspace are refused unless the caller may read there. Operation results
are readable only by the principal that started the operation. A route with no rule is refused: a
test asserts every registered route has one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from functions.api import join_tokens, node_exec, roles
from functions.api.clusters import CLUSTER, FILESERVER
from functions.api.common import EXP, JOB, RG, SUB, WS, settings
from functions.api.sweeps import SWEEP
from shared.domain import rbac, validation
from shared.domain.errors import ApiError
from shared.domain.keys import PROVIDER
from shared.services import authorization

ItemScope = Callable[[dict[str, Any], str], str]  # (item, the rule's scope) -> the scope the item is read at


def by_id(item: dict[str, Any], _: str) -> str:
    return str(item["id"])


def rejected_scope(item: dict[str, Any], resource_group: str) -> str:
    """A refused submission belongs to the workspace it named, else to its resource group."""
    workspace = (item.get("properties") or {}).get("workspace")
    try:
        validation.check_name("workspaceName", workspace)
    except (ApiError, TypeError):
        return resource_group
    return f"{resource_group}/providers/{PROVIDER}/workspaces/{workspace}"


def assignment_scope(item: dict[str, Any], listed: str) -> str:
    """An assignment inherited from above the listed scope is read at it; one below, at its own scope."""
    scope = str(item["properties"]["scope"])
    return listed if rbac.contains(scope, listed) else scope


@dataclass(frozen=True)
class Rule:
    action: str
    scope: str | None = None  # template over path parameters; None: any authenticated caller
    items: ItemScope | None = None  # a list: keep the items where the caller may `action` at this scope
    refuse: bool = True  # False: a list across scopes, filtered but never refused
    caller_bound: bool = False  # an operation result: only its starter may read it

    def scope_of(self, params: Mapping[str, str]) -> str | None:
        if self.scope is None:
            return None
        values = {k: roles.arm_scope(v) if k == "scope" else v for k, v in params.items()}
        return self.scope.format(**values)

    def visible(self, access: authorization.Access, scope: str | None, items: list[Any]) -> list[Any]:
        if self.items is None or scope is None:
            return items
        item_scope = self.items
        return [i for i in items if access.allowed(self.action, item_scope(i, scope))]


def _list(action: str, scope: str, items: ItemScope = by_id, refuse: bool = True) -> Rule:
    return Rule(action, scope, items, refuse)


_OPS = f"{SUB}/providers/{PROVIDER}/locations/{{location}}"
_RUNS = f"{WS}/batchScoringRuns"
_ROLE_SCOPE = "{scope}"
_ASSIGNMENT_ID = "{scope}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}"

RULES: dict[tuple[str, str], Rule] = {
    ("GET", f"/providers/{PROVIDER}/operations"): Rule(rbac.OPERATIONS_READ),
    ("GET", f"{_OPS}/usages"): Rule(rbac.USAGES_READ, SUB),
    ("GET", f"{_OPS}/operationresults/{{operationId}}"): Rule(rbac.OPERATION_RESULTS_READ, SUB, caller_bound=True),
    ("GET", f"{_OPS}/operationstatuses/{{operationId}}"): Rule(rbac.OPERATION_STATUSES_READ, SUB, caller_bound=True),
    ("GET", f"{SUB}/providers/{PROVIDER}/workspaces"): _list(rbac.WORKSPACES_READ, SUB, refuse=False),
    ("GET", f"{RG}/providers/{PROVIDER}/workspaces"): _list(rbac.WORKSPACES_READ, RG, refuse=False),
    ("PUT", WS): Rule(rbac.WORKSPACES_WRITE, WS),
    ("PATCH", WS): Rule(rbac.WORKSPACES_WRITE, WS),
    ("GET", WS): Rule(rbac.WORKSPACES_READ, WS),
    ("DELETE", WS): Rule(rbac.WORKSPACES_DELETE, WS),
    ("GET", f"{WS}/experiments"): _list(rbac.EXPERIMENTS_READ, WS),
    ("PUT", EXP): Rule(rbac.EXPERIMENTS_WRITE, EXP),
    ("GET", EXP): Rule(rbac.EXPERIMENTS_READ, EXP),
    ("DELETE", EXP): Rule(rbac.EXPERIMENTS_DELETE, EXP),
    ("GET", f"{EXP}/jobs"): _list(rbac.JOBS_READ, EXP),
    ("PUT", JOB): Rule(rbac.JOBS_WRITE, JOB),
    ("GET", JOB): Rule(rbac.JOBS_READ, JOB),
    ("DELETE", JOB): Rule(rbac.JOBS_DELETE, JOB),
    ("POST", f"{JOB}/terminate"): Rule(rbac.JOBS_TERMINATE, JOB),
    ("POST", f"{JOB}/listOutputFiles"): Rule(rbac.JOBS_OUTPUT_FILES, JOB),
    ("GET", f"{JOB}/listOutputFiles"): Rule(rbac.JOBS_OUTPUT_FILES, JOB),
    ("POST", f"{JOB}/listRemoteLoginInformation"): Rule(rbac.JOBS_REMOTE_LOGIN, JOB),
    ("GET", f"{JOB}/metrics"): Rule(rbac.JOBS_READ, JOB),
    ("GET", f"{WS}/clusters"): _list(rbac.CLUSTERS_READ, WS),
    ("PUT", CLUSTER): Rule(rbac.CLUSTERS_WRITE, CLUSTER),
    ("PATCH", CLUSTER): Rule(rbac.CLUSTERS_WRITE, CLUSTER),
    ("GET", CLUSTER): Rule(rbac.CLUSTERS_READ, CLUSTER),
    ("DELETE", CLUSTER): Rule(rbac.CLUSTERS_DELETE, CLUSTER),
    ("POST", f"{CLUSTER}/listRemoteLoginInformation"): Rule(rbac.CLUSTERS_REMOTE_LOGIN, CLUSTER),
    # Running a command on a node is what logging in to it allows (a result is its caller's: see node_exec)
    ("POST", node_exec.CLUSTER_EXEC): Rule(rbac.CLUSTERS_REMOTE_LOGIN, CLUSTER),
    ("GET", node_exec.CLUSTER_EXEC_RESULT): Rule(rbac.CLUSTERS_REMOTE_LOGIN, CLUSTER),
    ("POST", node_exec.JOB_EXEC): Rule(rbac.JOBS_REMOTE_LOGIN, JOB),
    ("GET", node_exec.JOB_EXEC_RESULT): Rule(rbac.JOBS_REMOTE_LOGIN, JOB),
    ("POST", f"{CLUSTER}/listNodeSetupFiles"): Rule(rbac.CLUSTERS_SETUP_FILES, CLUSTER),
    ("GET", f"{CLUSTER}/listNodeSetupFiles"): Rule(rbac.CLUSTERS_SETUP_FILES, CLUSTER),
    # Join tokens of a bring-your-own cluster: who may change the cluster may let machines join it
    ("POST", join_tokens.JOIN_TOKENS): Rule(rbac.CLUSTERS_WRITE, CLUSTER),
    ("GET", join_tokens.JOIN_TOKENS): Rule(rbac.CLUSTERS_READ, CLUSTER),
    ("DELETE", join_tokens.JOIN_TOKEN): Rule(rbac.CLUSTERS_WRITE, CLUSTER),
    ("GET", f"{WS}/fileServers"): _list(rbac.FILESERVERS_READ, WS),
    ("PUT", FILESERVER): Rule(rbac.FILESERVERS_WRITE, FILESERVER),
    ("GET", FILESERVER): Rule(rbac.FILESERVERS_READ, FILESERVER),
    ("DELETE", FILESERVER): Rule(rbac.FILESERVERS_DELETE, FILESERVER),
    ("GET", _RUNS): _list(rbac.SCORING_RUNS_READ, WS),
    ("GET", f"{_RUNS}/{{runName}}"): Rule(rbac.SCORING_RUNS_READ, f"{_RUNS}/{{runName}}"),
    ("GET", f"{EXP}/sweeps"): _list(rbac.SWEEPS_READ, EXP),
    ("PUT", SWEEP): Rule(rbac.SWEEPS_WRITE, SWEEP),
    ("GET", SWEEP): Rule(rbac.SWEEPS_READ, SWEEP),
    ("DELETE", SWEEP): Rule(rbac.SWEEPS_DELETE, SWEEP),
    ("POST", f"{SWEEP}/cancel"): Rule(rbac.SWEEPS_CANCEL, SWEEP),
    ("GET", f"{RG}/providers/{PROVIDER}/rejectedSubmissions"): _list(rbac.REJECTED_READ, RG, rejected_scope,
                                                                        refuse=False),
    ("PUT", roles.ASSIGNMENT): Rule(rbac.ROLE_ASSIGNMENTS_WRITE, _ASSIGNMENT_ID),
    ("GET", roles.ASSIGNMENT): Rule(rbac.ROLE_ASSIGNMENTS_READ, _ASSIGNMENT_ID),
    ("DELETE", roles.ASSIGNMENT): Rule(rbac.ROLE_ASSIGNMENTS_DELETE, _ASSIGNMENT_ID),
    ("GET", roles.ASSIGNMENTS): _list(rbac.ROLE_ASSIGNMENTS_READ, _ROLE_SCOPE, assignment_scope, refuse=False),
    ("GET", roles.DEFINITIONS): Rule(rbac.ROLE_DEFINITIONS_READ, _ROLE_SCOPE),
    ("GET", roles.DEFINITION): Rule(rbac.ROLE_DEFINITIONS_READ, _ROLE_SCOPE),
}


# The dashboard's pages (functions.dashboard), checked for the principal of the session: the same actions
# over the same scopes as the API routes that read or change the same things.
DASHBOARD = "/dashboard"
DASHBOARD_WS = f"{DASHBOARD}{RG}/workspaces/{{workspaceName}}"
DASHBOARD_EXP = DASHBOARD_WS + "/experiments/{experimentName}"
DASHBOARD_JOB = DASHBOARD_EXP + "/jobs/{jobName}"
DASHBOARD_SWEEP = DASHBOARD_EXP + "/sweeps/{sweepName}"
DASHBOARD_RULES: dict[tuple[str, str], Rule] = {
    ("GET", f"{DASHBOARD}/"): Rule(rbac.WORKSPACES_READ),  # any signed-in principal: every list on it is filtered
    ("GET", DASHBOARD_WS): Rule(rbac.WORKSPACES_READ, WS),
    ("GET", f"{DASHBOARD_WS}/clusters"): Rule(rbac.CLUSTERS_READ, WS),
    ("GET", f"{DASHBOARD_WS}/runs"): Rule(rbac.SCORING_RUNS_READ, WS),
    ("GET", DASHBOARD_EXP): Rule(rbac.JOBS_READ, EXP),
    ("GET", f"{DASHBOARD_EXP}/jobs"): Rule(rbac.JOBS_READ, EXP),
    ("GET", DASHBOARD_JOB): Rule(rbac.JOBS_READ, JOB),
    ("GET", f"{DASHBOARD_JOB}/status"): Rule(rbac.JOBS_READ, JOB),
    ("GET", DASHBOARD_SWEEP): Rule(rbac.SWEEPS_READ, SWEEP),
    ("GET", f"{DASHBOARD_SWEEP}/status"): Rule(rbac.SWEEPS_READ, SWEEP),
    ("GET", f"{DASHBOARD_JOB}/metrics"): Rule(rbac.JOBS_READ, JOB),
    ("GET", f"{DASHBOARD_JOB}/log"): Rule(rbac.JOBS_OUTPUT_FILES, JOB),
    ("GET", f"{DASHBOARD_JOB}/files"): Rule(rbac.JOBS_OUTPUT_FILES, JOB),
    ("GET", f"{DASHBOARD_JOB}/download"): Rule(rbac.JOBS_OUTPUT_FILES, JOB),
    ("POST", f"{DASHBOARD_JOB}/terminate"): Rule(rbac.JOBS_TERMINATE, JOB),
    ("POST", f"{DASHBOARD_JOB}/delete"): Rule(rbac.JOBS_DELETE, JOB),
}


def rule_of(request: Request) -> Rule | None:
    route = request.scope.get("route")
    return RULES.get((request.method, getattr(route, "path", "")))


def authorize(request: Request) -> None:
    """The dependency of every API route: checks the route's rule for the authenticated caller and leaves
    `request.state.access` and `request.state.visible` (the list filter) for the route."""
    principal = request.state.principal
    rule = rule_of(request)
    if rule is None:  # fail closed: a route nobody described is nobody's to call
        raise authorization.forbidden(principal, "(none)", request.url.path)
    conf = settings()
    access = authorization.Access(conf, principal)
    scope = rule.scope_of(request.path_params)
    if rule.caller_bound:
        authorization.require_operation(conf, principal, request.path_params["operationId"])
    elif scope is not None and rule.refuse:
        access.require(rule.action, scope)
    request.state.access = access
    request.state.visible = lambda items: rule.visible(access, scope, items)
