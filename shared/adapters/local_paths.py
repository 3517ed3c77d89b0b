"""Where the local stack keeps what stands in for Azure storage that Azurite lacks.

- An Azure File share is a directory per account/share, shared by every local node and the service.
- A file server is a directory per file server, exported to the local nodes.
- A node agent's working directory is one per node.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from shared.domain.keys import arm_names


def fileshare_dir(state_dir: Path, account_name: str, azure_file_url: str) -> Path:
    """`azure_file_url` is https://<account>.file.core.windows.net/<share> (as in the contract)."""
    parsed = urlparse(azure_file_url)
    share = parsed.path.strip("/").split("/")[0] or "share"
    return state_dir / "fileshares" / account_name.lower() / share.lower()


def fileserver_dir(state_dir: Path, fileserver_arm_id: str) -> Path:
    names = arm_names(fileserver_arm_id)
    sub, rg, ws, name = (names[kind] for kind in ("subscriptions", "resourcegroups", "workspaces", "fileservers"))
    return state_dir / "fileservers" / sub.lower() / rg.lower() / ws.lower() / name.lower()


def node_dir(state_dir: Path, node_id: str) -> Path:
    return state_dir / "nodes" / node_id


def shared_job_temp_dir(state_dir: Path, assignment_id: str) -> Path:
    """AZ_BATCHAI_SHARED_JOB_TEMP of one run of a job: one directory the whole gang shares."""
    return state_dir / "shared-job-temp" / assignment_id
