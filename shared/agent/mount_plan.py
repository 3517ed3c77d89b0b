"""The mounts of a job's volumes on a machine, as commands of the OS tools. Pure: volumes in, steps out.

Batch AI's mount volumes on a VM (cluster volumes are mounted by cloud-init at boot; the agent
mounts job volumes under the job's mount root with these steps and unmounts them when the job's
task ends):
- azureFileShares: ``mount -t cifs //<account>.file.<suffix>/<share> T -o vers=3.1.1,credentials=F,...``,
  F (0600) holding the account name and key: the key is never on a command line;
- azureBlobFileSystems: ``blobfuse2 mount T --config-file=F``, F (0600) a blobfuse2 config whose
  endpoint comes from the node's storage endpoint templates, the key in $AZURE_STORAGE_ACCESS_KEY;
- fileServers: ``mount -t nfs <ip>:/data[/sourceDirectory] T -o <mountOptions>``;
- unmanagedFileSystems: the user's ``mountCommand`` with T appended, run by bash, as Batch AI did (the
  agent runs it for no job: see `shared.agent.machine_mounts`).
Paths taken from the volumes (relativeMountPath, the share path, sourceDirectory) are plain: no '..'.
Every step unmounts its target with ``umount T`` (``blobfuse2 unmount T`` for blob containers).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from shared.agent.confine import PathEscape, relative_parts
from shared.agent.runtime import TaskStartError

DEFAULT_MODE = "0777"
DEFAULT_NFS_OPTIONS = "rw,hard,nointr"


@dataclass(frozen=True)
class SecretFile:
    path: Path
    content: str  # written 0600 before the command runs
    kept: bool = True  # False: deleted once the command ran (read once, like mount.cifs's credentials)


@dataclass(frozen=True)
class MountStep:
    kind: str  # the volume kind, for messages
    target: Path
    argv: tuple[str, ...]  # never holds a secret
    env: Mapping[str, str] = field(default_factory=dict)  # secrets the command reads from its environment
    files: tuple[SecretFile, ...] = ()
    dirs: tuple[Path, ...] = ()  # created before the command runs (the target among them)
    unmount: tuple[str, ...] = ()


def target_of(root: Path, relative: str | None) -> Path:
    try:
        parts = relative_parts(relative or "", "relativeMountPath")
    except PathEscape as error:
        raise TaskStartError("MountFailed", f"invalid relativeMountPath {relative!r}: {error}") from error
    if not parts:
        raise TaskStartError("MountFailed", f"invalid relativeMountPath {relative!r}")
    return root.joinpath(*parts)


def _plain_path(text: str, what: str) -> str:
    """`text` as '/a/b' of plain components (no '..', '.', or empty ones): what a share or export path may be."""
    try:
        return "".join(f"/{part}" for part in relative_parts(text, what))
    except PathEscape as error:
        raise TaskStartError("MountFailed", f"{what} {text!r}: {error}") from error


def _key(kind: str, volume: Mapping[str, Any]) -> str:
    key = (volume.get("credentials") or {}).get("accountKey")
    if not key:
        raise TaskStartError("MountFailed", f"{kind} {volume.get('relativeMountPath')!r}: no account key for "
                             f"storage account {volume.get('accountName')} (Key Vault secret references are not "
                             "supported on this node)")
    return str(key)


def _file_share(i: int, share: Mapping[str, Any], root: Path, config_dir: Path) -> MountStep:
    target = target_of(root, share.get("relativeMountPath"))
    url = urlparse(share["azureFileUrl"])
    path = _plain_path(url.path, "the share path of azureFileUrl")
    if not url.netloc or not path or "/" in url.netloc or url.netloc.startswith("."):
        raise TaskStartError("MountFailed", f"azureFileUrl {share['azureFileUrl']!r} names no share")
    credentials = config_dir / f"afs{i}.cred"
    options = (f"vers=3.1.1,credentials={credentials},serverino,nosharesock,actimeo=30,"
               f"dir_mode={share.get('directoryMode') or DEFAULT_MODE},"
               f"file_mode={share.get('fileMode') or DEFAULT_MODE}")
    secret = f"username={share['accountName']}\npassword={_key('azureFileShares', share)}\n"
    return MountStep("azureFileShares", target,
                     ("mount", "-t", "cifs", f"//{url.netloc}{path}", str(target), "-o", options),
                     files=(SecretFile(credentials, secret, kept=False),), dirs=(target,),
                     unmount=("umount", str(target)))


def _fuse_options(text: str) -> tuple[str, ...]:
    """Batch AI's blob mountOptions: command line options as written ("-o attr_timeout=240 -o ro"),
    or bare FUSE options ("attr_timeout=240,ro") that go after one -o."""
    words = shlex.split(text)
    if not words:
        return ()
    return tuple(words) if words[0].startswith("-") else ("-o", ",".join(words))


def _blob_container(i: int, blob: Mapping[str, Any], root: Path, config_dir: Path,
                    endpoints: Mapping[str, str]) -> MountStep:
    target = target_of(root, blob.get("relativeMountPath"))
    config_file, cache = config_dir / f"abfs{i}.yaml", config_dir / f"abfs{i}-cache"
    config = {
        "allow-other": True,  # tasks may run as other users than the agent
        "components": ["libfuse", "file_cache", "attr_cache", "azstorage"],
        "file_cache": {"path": str(cache)},
        "azstorage": {"type": "block", "account-name": blob["accountName"], "container": blob["containerName"],
                      "mode": "key", "endpoint": endpoints["blob"].format(account=blob["accountName"])},
    }
    extra = _fuse_options(str(blob.get("mountOptions") or ""))
    return MountStep("azureBlobFileSystems", target,
                     ("blobfuse2", "mount", str(target), f"--config-file={config_file}", *extra),
                     env={"AZURE_STORAGE_ACCESS_KEY": _key("azureBlobFileSystems", blob)},
                     files=(SecretFile(config_file, yaml.safe_dump(config, sort_keys=False)),), dirs=(target, cache),
                     unmount=("blobfuse2", "unmount", str(target)))


def _file_server(ref: Mapping[str, Any], root: Path, file_server_ips: Mapping[str, str]) -> MountStep:
    target = target_of(root, ref.get("relativeMountPath"))
    server_id = str((ref.get("fileServer") or {}).get("id", ""))
    ip = file_server_ips.get(server_id.lower())
    if not ip:
        raise TaskStartError("MountFailed", f"file server {server_id!r} has no known internal IP on this node")
    source = f"{ip}:/data" + _plain_path(ref.get("sourceDirectory") or "", "sourceDirectory")
    return MountStep("fileServers", target,
                     ("mount", "-t", "nfs", source, str(target), "-o", ref.get("mountOptions") or DEFAULT_NFS_OPTIONS),
                     dirs=(target,), unmount=("umount", str(target)))


def _unmanaged(fs: Mapping[str, Any], root: Path) -> MountStep:
    target = target_of(root, fs.get("relativeMountPath"))
    return MountStep("unmanagedFileSystems", target, ("bash", "-c", f"{fs['mountCommand']} {shlex.quote(str(target))}"),
                     dirs=(target,), unmount=("umount", str(target)))


def plan_mounts(volumes: Mapping[str, Any] | None, root: Path, config_dir: Path, endpoints: Mapping[str, str],
                file_server_ips: Mapping[str, str]) -> list[MountStep]:
    """The steps that mount `volumes` under `root`, in order. `config_dir` holds their secret files;
    `endpoints` are the storage endpoint templates ({"blob": "https://{account}.blob...", ...}).
    Raises TaskStartError("MountFailed") for a volume that cannot be mounted as given."""
    volumes = volumes or {}
    try:
        steps = [_file_share(i, s, root, config_dir) for i, s in enumerate(volumes.get("azureFileShares") or [])]
        steps += [_blob_container(i, b, root, config_dir, endpoints)
                  for i, b in enumerate(volumes.get("azureBlobFileSystems") or [])]
        steps += [_file_server(ref, root, file_server_ips) for ref in volumes.get("fileServers") or []]
        steps += [_unmanaged(fs, root) for fs in volumes.get("unmanagedFileSystems") or []]
    except (KeyError, TypeError, AttributeError) as error:
        raise TaskStartError("MountFailed", f"a mount volume lacks a field: {error}") from error
    return steps


def mount_targets(volumes: Mapping[str, Any] | None, root: Path) -> list[tuple[str, Path]]:
    """(kind, mount point) of every volume: what cloud-init must have mounted for a cluster."""
    volumes = volumes or {}
    return [(kind, target_of(root, volume.get("relativeMountPath")))
            for kind in ("azureFileShares", "azureBlobFileSystems", "fileServers", "unmanagedFileSystems")
            for volume in volumes.get(kind) or []]
