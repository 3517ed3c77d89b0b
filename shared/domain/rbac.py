"""Azure RBAC's model over Batch AI's actions: role definitions, scopes, and whether assignments grant an action.

Pure. Roles are Azure's, by their role definition GUIDs (Reader, Contributor, Owner), plus the
service's custom "BatchAI Job Submitter"; each is a set of `actions` and `notActions` patterns over
action strings, where `*` matches any run of characters and matching ignores case, as in Azure.
A role permits an action when some action pattern matches it and no notAction pattern does.

A scope is an ARM id: `/subscriptions/{s}`, `.../resourceGroups/{rg}`, or a Batch AI resource under
it. An assignment at a scope reaches that scope and everything under it (path prefix, case-insensitive).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

P = "Microsoft.BatchAI"
WORKSPACES_READ, WORKSPACES_WRITE, WORKSPACES_DELETE = (f"{P}/workspaces/{v}" for v in ("read", "write", "delete"))
CLUSTERS_READ, CLUSTERS_WRITE, CLUSTERS_DELETE = (f"{P}/workspaces/clusters/{v}" for v in ("read", "write", "delete"))
CLUSTERS_REMOTE_LOGIN = f"{P}/workspaces/clusters/remoteLoginInformation/action"
CLUSTERS_SETUP_FILES = f"{P}/workspaces/clusters/listNodeSetupFiles/action"  # beyond 2018-05-01
EXPERIMENTS_READ, EXPERIMENTS_WRITE, EXPERIMENTS_DELETE = (
    f"{P}/workspaces/experiments/{v}" for v in ("read", "write", "delete"))
JOBS_READ, JOBS_WRITE, JOBS_DELETE = (f"{P}/workspaces/experiments/jobs/{v}" for v in ("read", "write", "delete"))
JOBS_TERMINATE = f"{P}/workspaces/experiments/jobs/terminate/action"
JOBS_OUTPUT_FILES = f"{P}/workspaces/experiments/jobs/listoutputfiles/action"
JOBS_REMOTE_LOGIN = f"{P}/workspaces/experiments/jobs/remoteLoginInformation/action"
FILESERVERS_READ, FILESERVERS_WRITE, FILESERVERS_DELETE = (
    f"{P}/workspaces/fileservers/{v}" for v in ("read", "write", "delete"))
SCORING_RUNS_READ = f"{P}/workspaces/batchScoringRuns/read"  # beyond 2018-05-01
SWEEPS_READ, SWEEPS_WRITE, SWEEPS_DELETE = (  # beyond 2018-05-01
    f"{P}/workspaces/experiments/sweeps/{v}" for v in ("read", "write", "delete"))
SWEEPS_CANCEL = f"{P}/workspaces/experiments/sweeps/cancel/action"
REJECTED_READ = f"{P}/rejectedSubmissions/read"  # beyond 2018-05-01
USAGES_READ = f"{P}/locations/usages/read"
OPERATION_RESULTS_READ = f"{P}/locations/operationresults/read"
OPERATION_STATUSES_READ = f"{P}/locations/operationstatuses/read"
OPERATIONS_READ = f"{P}/operations/read"
ROLE_ASSIGNMENTS_READ, ROLE_ASSIGNMENTS_WRITE, ROLE_ASSIGNMENTS_DELETE = (
    f"Microsoft.Authorization/roleAssignments/{v}" for v in ("read", "write", "delete"))
ROLE_DEFINITIONS_READ = "Microsoft.Authorization/roleDefinitions/read"

BUILT_IN, CUSTOM = "BuiltInRole", "CustomRole"


@dataclass(frozen=True)
class RoleDefinition:
    guid: str
    name: str
    description: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()
    kind: str = BUILT_IN

    def permits(self, action: str) -> bool:
        return any(matches(p, action) for p in self.actions) and not any(matches(p, action) for p in self.not_actions)


OWNER = RoleDefinition(
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner",
    "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.", ("*",))
CONTRIBUTOR = RoleDefinition(
    "b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor",
    "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
    ("*",), ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
             "Microsoft.Authorization/elevateAccess/Action"))
READER = RoleDefinition(
    "acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader",
    "View all resources, but does not allow you to make any changes.", ("*/read",))
JOB_SUBMITTER = RoleDefinition(
    "9f7f480a-0abe-5422-9e08-764b2f9d7ca1", "BatchAI Job Submitter",
    "Reads workspaces, clusters and experiments; submits, reads and terminates jobs and lists their output files; "
    "creates, reads and cancels sweeps.",
    (WORKSPACES_READ, CLUSTERS_READ, EXPERIMENTS_READ, JOBS_READ, JOBS_WRITE, JOBS_TERMINATE, JOBS_OUTPUT_FILES,
     SWEEPS_READ, SWEEPS_WRITE, SWEEPS_CANCEL),
    kind=CUSTOM)
ROLES = (OWNER, CONTRIBUTOR, READER, JOB_SUBMITTER)


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE)


def matches(pattern: str, action: str) -> bool:
    """Azure's action wildcard: `*` matches any characters (slashes too); case-insensitive; whole string."""
    return _pattern(pattern).fullmatch(action) is not None


def role_by_guid(guid: str) -> RoleDefinition | None:
    return next((r for r in ROLES if r.guid == guid.lower()), None)


def role_by_name(name: str) -> RoleDefinition | None:
    return next((r for r in ROLES if r.name.lower() == name.strip().lower()), None)


ROLE_DEFINITION_PATH = "/providers/Microsoft.Authorization/roleDefinitions/"


def role_definition_id(subscription: str, role: RoleDefinition) -> str:
    return f"/subscriptions/{subscription}{ROLE_DEFINITION_PATH}{role.guid}"


def role_of_definition_id(definition_id: str) -> RoleDefinition | None:
    """The role a roleDefinitionId names (`/subscriptions/{s}/providers/...` or `/providers/...`), or None."""
    head, sep, guid = definition_id.rpartition("/")
    if not sep or not (head + "/").lower().endswith(ROLE_DEFINITION_PATH.lower()):
        return None
    prefix = head[: len(head) - len(ROLE_DEFINITION_PATH) + 1]
    if prefix and not re.fullmatch(r"/subscriptions/[^/]+", prefix, re.IGNORECASE):
        return None
    return role_by_guid(guid)


def render_role_definition(role: RoleDefinition, subscription: str) -> dict[str, Any]:
    """A role definition as ARM's roleDefinitions API answers it (api-version 2022-04-01)."""
    return {"id": role_definition_id(subscription, role), "name": role.guid,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": role.name, "type": role.kind, "description": role.description,
                           "assignableScopes": ["/"],
                           "permissions": [{"actions": list(role.actions), "notActions": list(role.not_actions),
                                            "dataActions": [], "notDataActions": []}]}}


# Scopes --------------------------------------------------------------------------------------------------

_SEGMENT = re.compile(r"(?=.{1,90}$)[-\w()]+(\.[-\w()]+)*", re.ASCII)  # dots only between other characters
CHILD_TYPES = {"workspaces": ("clusters", "experiments", "fileservers", "batchscoringruns"),
               "experiments": ("jobs", "sweeps")}


def normalize(scope: str) -> str:
    """The scope as one string to compare: no trailing slash, lower case."""
    return scope.rstrip("/").lower() or "/"


def contains(outer: str, inner: str) -> bool:
    """Whether a role at `outer` reaches `inner`: the same scope or one under it."""
    o, i = normalize(outer), normalize(inner)
    return o == "/" or i == o or i.startswith(o + "/")


def subscription_of(scope: str) -> str | None:
    parts = scope.strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[0].lower() == "subscriptions" else None


def check_scope(scope: str) -> str:
    """`scope` when it is a subscription, a resource group or a Batch AI resource (a workspace or one of its
    children); ValueError saying why not."""
    parts = scope.split("/")
    if scope != "/" + "/".join(parts[1:]) or not all(parts[1:]):
        raise ValueError("a scope is an ARM id: it starts with '/' and has no empty segment")
    rest = parts[1:]
    if len(rest) < 2 or rest[0].lower() != "subscriptions" or not _SEGMENT.fullmatch(rest[1]):
        raise ValueError("a scope starts with /subscriptions/{subscriptionId}")
    rest = rest[2:]
    if rest:
        if len(rest) < 2 or rest[0].lower() != "resourcegroups" or not _SEGMENT.fullmatch(rest[1]):
            raise ValueError("under a subscription, a scope names /resourceGroups/{resourceGroupName}")
        rest = rest[2:]
    if rest:
        if len(rest) < 4 or [p.lower() for p in rest[:3]] != ["providers", P.lower(), "workspaces"] \
                or not _SEGMENT.fullmatch(rest[3]):
            raise ValueError(f"under a resource group, a scope names /providers/{P}/workspaces/{{workspaceName}}")
        parent, rest = "workspaces", rest[4:]
        while rest:
            kind = rest[0].lower()
            if len(rest) < 2 or kind not in CHILD_TYPES.get(parent, ()) or not _SEGMENT.fullmatch(rest[1]):
                raise ValueError(f"'{'/'.join(rest)}' does not name a Batch AI resource")
            parent, rest = kind, rest[2:]
    return scope


# Assignments ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grant:
    """What a role assignment says, for deciding: a principal (or group) holds a role at a scope."""
    principal_id: str
    role_guid: str
    scope: str


def granted(grants: Iterable[Grant], principal_ids: frozenset[str], action: str, scope: str) -> bool:
    """Whether any grant of one of `principal_ids` at a scope containing `scope` has a role permitting `action`."""
    for grant in grants:
        if grant.principal_id.lower() in principal_ids and contains(grant.scope, scope):
            role = role_by_guid(grant.role_guid)
            if role is not None and role.permits(action):
                return True
    return False
