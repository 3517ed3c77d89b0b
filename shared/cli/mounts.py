"""What `--nfs`, `--afs-name` and `--bfs-name` mount, as `az batchai` built it: entries added to a REST
mountVolumes object, for a cluster (every node, under $AZ_BATCHAI_MOUNT_ROOT) or a job (its nodes, under
$AZ_BATCHAI_JOB_MOUNT_ROOT). Shares and containers belong to the storage account of
--storage-account-name/-key (default: the endpoint's storage); a file server is named in the workspace or
given by its ARM id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from shared.cli.context import CliError
from shared.cli.specfiles import StorageAccount

AZURE_FILE_URL = "https://{account}.file.core.windows.net/{share}"

NfsOpt = Annotated[str | None, typer.Option(
    "--nfs", help="Name (in the workspace) or ARM id of a file server to mount.", rich_help_panel="File Server Mount")]
NfsPathOpt = Annotated[str, typer.Option(
    "--nfs-mount-path", help="Relative mount path of the file server.", rich_help_panel="File Server Mount")]
AfsOpt = Annotated[str | None, typer.Option(
    "--afs-name", help="Azure File share of the storage account to mount.", rich_help_panel="Azure Storage Mount")]
AfsPathOpt = Annotated[str, typer.Option(
    "--afs-mount-path", help="Relative mount path of the Azure File share.", rich_help_panel="Azure Storage Mount")]
BfsOpt = Annotated[str | None, typer.Option(
    "--bfs-name", help="Blob container of the storage account to mount.", rich_help_panel="Azure Storage Mount")]
BfsPathOpt = Annotated[str, typer.Option(
    "--bfs-mount-path", help="Relative mount path of the blob container.", rich_help_panel="Azure Storage Mount")]


@dataclass(frozen=True)
class MountFlags:
    nfs: str | None = None
    nfs_path: str = "nfs"
    afs: str | None = None
    afs_path: str = "afs"
    bfs: str | None = None
    bfs_path: str = "bfs"

    def any(self) -> bool:
        return bool(self.nfs or self.afs or self.bfs)


def _account(account: StorageAccount, what: str) -> tuple[str, str]:
    if not account.name:
        raise CliError(f"{what} needs a storage account: pass --storage-account-name or set "
                       "AZURE_BATCHAI_STORAGE_ACCOUNT", exit_code=2)
    if not account.key:
        raise CliError(f"{what} needs the key of storage account {account.name}: pass --storage-account-key or "
                       "set AZURE_BATCHAI_STORAGE_KEY", exit_code=2)
    return account.name, account.key


def add_mounts(volumes: dict[str, Any] | None, flags: MountFlags, account: StorageAccount,
               file_server_id: Callable[[str], str]) -> dict[str, Any] | None:
    """`volumes` (REST mountVolumes, or None) with what the flags mount appended; None when nothing is."""
    if not flags.any():
        return volumes
    out = dict(volumes or {})
    for path in (flags.nfs_path if flags.nfs else None, flags.afs_path if flags.afs else None,
                 flags.bfs_path if flags.bfs else None):
        if path is not None and not path.strip("/"):
            raise CliError("a relative mount path must not be empty", exit_code=2)
    if flags.nfs:
        out["fileServers"] = [*(out.get("fileServers") or []), {
            "fileServer": {"id": file_server_id(flags.nfs)}, "relativeMountPath": flags.nfs_path,
            "mountOptions": "rw"}]
    if flags.afs:
        name, key = _account(account, f"--afs-name {flags.afs}")
        out["azureFileShares"] = [*(out.get("azureFileShares") or []), {
            "accountName": name, "azureFileUrl": AZURE_FILE_URL.format(account=name, share=flags.afs),
            "credentials": {"accountKey": key}, "relativeMountPath": flags.afs_path}]
    if flags.bfs:
        name, key = _account(account, f"--bfs-name {flags.bfs}")
        out["azureBlobFileSystems"] = [*(out.get("azureBlobFileSystems") or []), {
            "accountName": name, "containerName": flags.bfs, "credentials": {"accountKey": key},
            "relativeMountPath": flags.bfs_path}]
    return out
