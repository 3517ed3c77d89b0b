"""infra/: checkov's Bicep checks pass, and every skipped check is justified in the template."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

INFRA = Path(__file__).resolve().parents[2] / "infra"
SKIP = re.compile(r"#checkov:skip=(CKV2?_[A-Z]+_\d+):(.*)")


def checkov(*args: str) -> dict[str, Any]:
    """infra/checkov.sh (installs the pinned checkov on first use) with JSON output."""
    done = subprocess.run([str(INFRA / "checkov.sh"), "--framework", "bicep", "-o", "json", *args],
                          capture_output=True, text=True, timeout=900)
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout)
    return report if isinstance(report, dict) else report[0]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return checkov("-d", str(INFRA))


def test_checkov_finds_no_failed_check(report: dict[str, Any]) -> None:
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and summary["failed"] == 0
    assert summary["parsing_errors"] == 0, report["results"].get("parsing_errors")
    assert summary["passed"] >= 30 and summary["resource_count"] >= 40  # the templates were really read


def test_every_skipped_check_has_a_reason_in_the_template(report: dict[str, Any]) -> None:
    comments: dict[str, str] = {}
    for path in INFRA.rglob("*.bicep"):
        for match in SKIP.finditer(path.read_text()):
            comments[match.group(1)] = match.group(2).strip()
    assert all(len(reason) > 20 for reason in comments.values()), comments
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped == set(comments), "a skip comment that checkov did not use, or a skip without a comment"


def test_checkov_fails_an_unsafe_template(tmp_path: Path) -> None:
    (tmp_path / "bad.bicep").write_text("""
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'unsafe'
  location: 'westeurope'
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_0'
    allowBlobPublicAccess: true
    supportsHttpsTrafficOnly: false
  }
}
""")
    report = checkov("-d", str(tmp_path))
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_AZURE_44", "CKV_AZURE_3"} <= failed  # TLS 1.2 and https-only


def test_main_template_wires_the_pieces() -> None:
    main = (INFRA / "main.bicep").read_text()
    for module in ("monitoring", "network", "identities", "storage", "keyvault", "compute-access",
                   "identity-operator", "functionapp"):
        assert f"'modules/{module}.bicep'" in main
        assert (INFRA / "modules" / f"{module}.bicep").exists()
    app = (INFRA / "modules" / "functionapp.bicep").read_text()
    assert "name: 'FC1', tier: 'FlexConsumption'" in app and "runtime: { name: 'python', version: '3.11' }" in app
    vault = (INFRA / "modules" / "keyvault.bicep").read_text()
    assert "enableRbacAuthorization: true" in vault and "enablePurgeProtection: true" in vault
    access = (INFRA / "modules" / "compute-access.bicep").read_text()
    assert "9980e02c-c2be-4d73-94e8-173b1dc7cf3c" in access  # Virtual Machine Contributor
