"""The example job and cluster files are valid Batch AI files and become the SDK models the demo builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli.context import CliError
from shared.cli.specfiles import StorageAccount, cluster_model, load_cluster_file, load_job_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ACCOUNT = StorageAccount("devstoreaccount1", "key")


def test_example_job_file() -> None:
    params = load_job_file(EXAMPLES / "jobs" / "digits.json", "/subscriptions/s/clusters/cpu2", ACCOUNT)
    assert params.cluster.id == "/subscriptions/s/clusters/cpu2"
    assert params.node_count == 1
    assert params.custom_toolkit_settings.command_line.endswith("afs/scripts/train.py --epochs 8")
    assert [d.id for d in params.output_directories] == ["MODEL"]


def test_example_cluster_file_gets_the_storage_account() -> None:
    params = cluster_model(load_cluster_file(EXAMPLES / "clusters" / "cpu2.json", ACCOUNT), "cpu2.json")
    assert params.scale_settings.manual.target_node_count == 2
    share = params.node_setup.mount_volumes.azure_file_shares[0]
    assert share.azure_file_url == "https://devstoreaccount1.file.core.windows.net/batchaidemo"
    assert share.account_name == "devstoreaccount1"
    assert share.credentials.account_key == "key"
    assert share.relative_mount_path == "afs"


def test_cluster_file_with_a_wrong_type_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "cluster.json"
    bad.write_text('{"properties": {"vmSize": "X", "scaleSettings": {"manual": {"targetNodeCount": "two"}}}}')
    with pytest.raises(CliError, match=r"properties\.scaleSettings\.manual\.targetNodeCount: 'two' is not of type"):
        load_cluster_file(bad, ACCOUNT)
