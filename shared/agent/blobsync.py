"""Files between the node and Blob storage: output directories, and blob containers as local mounts.

A blob container "mounted" on a local node is a directory: downloaded before use, and its new or
changed files uploaded back after each task (deletions are not propagated). A manifest beside the
directory remembers what was downloaded or uploaded, so only differences move.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient

from shared.agent.node_storage import OutputBlobs
from shared.agent.retry import NO_SDK_RETRY, with_retries

UPLOAD_BATCH = 100  # names whose access is asked for at once


def upload_tree(blobs: OutputBlobs, local_dir: Path, prefix: str, give_up: threading.Event | None = None) -> int:
    """Upload every file under `local_dir` to ``{prefix}/{relative path}``; the number of files.
    Symbolic links are not followed (a job cannot make the agent upload what lies outside)."""
    if not local_dir.is_dir():
        return 0
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and not p.is_symlink())
    if not files:
        return 0
    with_retries(blobs.create_container, "creating the output container", give_up)
    named = [(path, f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}") for path in files]
    for start in range(0, len(named), UPLOAD_BATCH):
        batch = named[start:start + UPLOAD_BATCH]
        with_retries(lambda batch=batch: blobs.prepare([name for _, name in batch]), "getting upload access",
                     give_up)
        for path, name in batch:
            def put(path: Path = path, name: str = name) -> None:
                with open(path, "rb") as data:
                    blobs.blob(name).upload_blob(data, overwrite=True, **NO_SDK_RETRY)
            with_retries(put, f"uploading {name}", give_up)
    return len(named)


def _stamp(path: Path) -> list[float]:
    st = path.stat()
    return [st.st_size, st.st_mtime]


@dataclass
class BlobMount:
    container: ContainerClient
    local_dir: Path
    manifest_path: Path
    give_up: threading.Event | None = None

    def _manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return json.loads(self.manifest_path.read_text())
        return {}

    def _save(self, manifest: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, self.manifest_path)

    def download(self) -> int:
        """Bring the directory up to date with the container; the number of files fetched."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        manifest = self._manifest()
        blobs = with_retries(lambda: list(self.container.list_blobs(**NO_SDK_RETRY)), "listing a mounted container",
                             self.give_up)
        fetched = 0
        for blob in blobs:
            path = self.local_dir / blob.name
            known = manifest.get(blob.name)
            if known and known.get("etag") == blob.etag and path.exists() and _stamp(path) == known.get("stamp"):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)

            def fetch(name: str = blob.name, path: Path = path) -> None:
                with open(path, "wb") as out:
                    self.container.download_blob(name, **NO_SDK_RETRY).readinto(out)
            with_retries(fetch, f"downloading {blob.name}", self.give_up)
            manifest[blob.name] = {"etag": blob.etag, "stamp": _stamp(path)}
            fetched += 1
        self._save(manifest)
        return fetched

    def upload_changes(self) -> int:
        """Upload new and changed files; the number uploaded."""
        if not self.local_dir.is_dir():
            return 0
        manifest = self._manifest()
        uploaded = 0
        for path in sorted(p for p in self.local_dir.rglob("*") if p.is_file()):
            name = path.relative_to(self.local_dir).as_posix()
            known = manifest.get(name)
            if known and known.get("stamp") == _stamp(path):
                continue

            def put(name: str = name, path: Path = path) -> str:
                with open(path, "rb") as data:
                    blob = self.container.get_blob_client(name)  # ContainerClient.upload_blob returns no etag
                    return str(blob.upload_blob(data, overwrite=True, **NO_SDK_RETRY)["etag"])
            etag = with_retries(put, f"uploading {name} to a mounted container", self.give_up)
            manifest[name] = {"etag": etag, "stamp": _stamp(path)}
            uploaded += 1
        self._save(manifest)
        return uploaded
