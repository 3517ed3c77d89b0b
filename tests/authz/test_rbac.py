"""The role model, pure: Azure's wildcards, the four roles' verdicts on every Batch AI action, scopes, grants."""

from __future__ import annotations

import pytest

from shared.domain import principals, rbac
from shared.domain.rbac import Grant

R, S, C, OW = rbac.READER, rbac.JOB_SUBMITTER, rbac.CONTRIBUTOR, rbac.OWNER

# action -> the roles that permit it (Azure's definitions: Reader */read, Contributor * but role management,
# Owner *, and the job submitter's own list)
VERDICTS = {
    rbac.WORKSPACES_READ: {R, S, C, OW}, rbac.WORKSPACES_WRITE: {C, OW}, rbac.WORKSPACES_DELETE: {C, OW},
    rbac.CLUSTERS_READ: {R, S, C, OW}, rbac.CLUSTERS_WRITE: {C, OW}, rbac.CLUSTERS_DELETE: {C, OW},
    rbac.CLUSTERS_REMOTE_LOGIN: {C, OW}, rbac.CLUSTERS_SETUP_FILES: {C, OW},
    rbac.EXPERIMENTS_READ: {R, S, C, OW}, rbac.EXPERIMENTS_WRITE: {C, OW}, rbac.EXPERIMENTS_DELETE: {C, OW},
    rbac.JOBS_READ: {R, S, C, OW}, rbac.JOBS_WRITE: {S, C, OW}, rbac.JOBS_DELETE: {C, OW},
    rbac.JOBS_TERMINATE: {S, C, OW}, rbac.JOBS_OUTPUT_FILES: {S, C, OW}, rbac.JOBS_REMOTE_LOGIN: {C, OW},
    rbac.FILESERVERS_READ: {R, C, OW}, rbac.FILESERVERS_WRITE: {C, OW}, rbac.FILESERVERS_DELETE: {C, OW},
    rbac.SWEEPS_READ: {R, S, C, OW}, rbac.SWEEPS_WRITE: {S, C, OW}, rbac.SWEEPS_DELETE: {C, OW},
    rbac.SWEEPS_CANCEL: {S, C, OW},
    rbac.SCORING_RUNS_READ: {R, C, OW}, rbac.REJECTED_READ: {R, C, OW}, rbac.USAGES_READ: {R, C, OW},
    rbac.OPERATION_RESULTS_READ: {R, C, OW}, rbac.OPERATIONS_READ: {R, C, OW},
    rbac.ROLE_ASSIGNMENTS_READ: {R, C, OW}, rbac.ROLE_ASSIGNMENTS_WRITE: {OW}, rbac.ROLE_ASSIGNMENTS_DELETE: {OW},
    rbac.ROLE_DEFINITIONS_READ: {R, C, OW},
    "Microsoft.Authorization/elevateAccess/Action": {OW},
    "Microsoft.BatchAI/register/action": {C, OW},
}


@pytest.mark.parametrize("action", sorted(VERDICTS))
def test_each_role_permits_exactly_its_actions(action: str) -> None:
    assert {role for role in rbac.ROLES if role.permits(action)} == VERDICTS[action]


def test_roles_are_azures_by_guid_and_name() -> None:
    assert rbac.role_by_guid("ACDD72A7-3385-48EF-BD42-F606FBA81AE7") is R
    assert rbac.role_by_name("contributor") is C and rbac.role_by_name(" Owner ") is OW
    assert rbac.role_by_name("batchai job submitter") is S and S.kind == rbac.CUSTOM and OW.kind == rbac.BUILT_IN
    assert rbac.role_by_guid("00000000-0000-0000-0000-000000000000") is None
    assert set(S.actions) == {
        "Microsoft.BatchAI/workspaces/read", "Microsoft.BatchAI/workspaces/clusters/read",
        "Microsoft.BatchAI/workspaces/experiments/read", "Microsoft.BatchAI/workspaces/experiments/jobs/read",
        "Microsoft.BatchAI/workspaces/experiments/jobs/write",
        "Microsoft.BatchAI/workspaces/experiments/jobs/terminate/action",
        "Microsoft.BatchAI/workspaces/experiments/jobs/listoutputfiles/action",
        "Microsoft.BatchAI/workspaces/experiments/sweeps/read", "Microsoft.BatchAI/workspaces/experiments/sweeps/write",
        "Microsoft.BatchAI/workspaces/experiments/sweeps/cancel/action"}


@pytest.mark.parametrize(("pattern", "action", "hit"), [
    ("*", "Microsoft.BatchAI/workspaces/read", True),
    ("*/read", "Microsoft.BatchAI/workspaces/experiments/jobs/read", True),
    ("*/read", "Microsoft.BatchAI/workspaces/experiments/jobs/write", False),
    ("*/read", "Microsoft.BatchAI/workspaces/readers/write", False),
    ("Microsoft.Authorization/*/Write", "microsoft.authorization/roleassignments/write", True),
    ("Microsoft.Authorization/*/Write", "Microsoft.BatchAI/workspaces/write", False),
    ("Microsoft.BatchAI/workspaces/read", "Microsoft.BatchAI/workspaces/read/extra", False),
    ("Microsoft.BatchAI/workspaces.read", "Microsoft.BatchAI/workspacesXread", False),  # '.' is literal
])
def test_wildcards(pattern: str, action: str, hit: bool) -> None:
    assert rbac.matches(pattern, action) is hit


SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"
WS = f"{SUB}/resourceGroups/rg/providers/Microsoft.BatchAI/workspaces/ws"


@pytest.mark.parametrize(("outer", "inner", "hit"), [
    (SUB, f"{SUB}/resourceGroups/rg", True),
    (f"{SUB}/resourceGroups/RG", WS, True),
    (WS, WS + "/", True),
    (WS, f"{WS}/experiments/e/jobs/j", True),
    (WS, f"{WS}2", False),  # a sibling sharing a prefix
    (f"{WS}/experiments/e", WS, False),  # a child's role does not reach its parent
    ("/", WS, True),
])
def test_scopes_contain(outer: str, inner: str, hit: bool) -> None:
    assert rbac.contains(outer, inner) is hit


@pytest.mark.parametrize("scope", [SUB, f"{SUB}/resourceGroups/my.rg(1)", WS, f"{WS}/clusters/c",
                                   f"{WS}/experiments/e/jobs/j", f"{WS}/fileServers/fs", f"{WS}/batchScoringRuns/r"])
def test_valid_scopes(scope: str) -> None:
    assert rbac.check_scope(scope) == scope


@pytest.mark.parametrize("scope", ["", "/", "subscriptions/x", f"{SUB}/", f"{SUB}//resourceGroups/rg",
                                   f"{SUB}/resourceGroups/..", f"{SUB}/resourceGroups/a.", f"{SUB}/locations/x",
                                   f"{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v",
                                   f"{WS}/jobs/j", f"{WS}/experiments/e/clusters/c", f"{WS}/clusters",
                                   f"{SUB}/resourceGroups/r\u212ag"])
def test_invalid_scopes(scope: str) -> None:
    with pytest.raises(ValueError):
        rbac.check_scope(scope)


def test_role_definition_ids() -> None:
    assert rbac.role_of_definition_id(rbac.role_definition_id("s", R)) is R
    assert rbac.role_of_definition_id(f"/providers/Microsoft.Authorization/roleDefinitions/{OW.guid}") is OW
    for wrong in (OW.guid, f"/subscriptions/s/providers/Microsoft.Compute/roleDefinitions/{OW.guid}",
                  f"/subscriptions/s/rg/providers/Microsoft.Authorization/roleDefinitions/{OW.guid}",
                  "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/nope"):
        assert rbac.role_of_definition_id(wrong) is None, wrong


def test_grants_reach_principals_and_their_groups_at_and_under_their_scope() -> None:
    alice = principals.Principal("a1", "t", "alice", groups=frozenset({"g1"}))
    grants = [Grant("g1", R.guid, WS), Grant("a1", S.guid, f"{WS}/experiments/e"), Grant("other", OW.guid, SUB)]
    ids = alice.ids
    assert rbac.granted(grants, ids, rbac.WORKSPACES_READ, WS)  # through the group
    assert rbac.granted(grants, ids, rbac.JOBS_WRITE, f"{WS}/experiments/e/jobs/j")
    assert not rbac.granted(grants, ids, rbac.JOBS_WRITE, f"{WS}/experiments/f/jobs/j")
    assert not rbac.granted(grants, ids, rbac.WORKSPACES_READ, f"{SUB}/resourceGroups/rg")
    assert not rbac.granted(grants, ids, rbac.WORKSPACES_DELETE, WS)
    assert not rbac.granted([Grant("a1", "unknown-role", WS)], ids, rbac.WORKSPACES_READ, WS)
