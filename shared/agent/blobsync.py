"""Files between the node and Blob storage: output directories, and blob containers as local mounts.

A blob container "mounted" on a local node is a directory: downloaded before use, and its new or
changed files uploaded back after each task (deletions are not propagated). A manifest beside the
directory remembers what was downloaded or uploaded, so only differences move.

Jobs write into these directories, so nothing here follows a symbolic link (see shared.agent.confine):
uploads take regular files only, reached one component at a time; downloads replace a link in the
way instead of writing through it; a blob whose name would climb out of the directory ('..') is
not downloaded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient

from shared.agent.confine import PathEscape, create_under, files_under, open_under, relative_parts, stat_under
from shared.agent.node_storage import OutputBlobs
from shared.agent.retry import NO_SDK_RETRY, with_retries

log = logging.getLogger(__name__)

UPLOAD_BATCH = 100  # names whose access is asked for at once


def upload_tree(blobs: OutputBlobs, local_dir: Path, prefix: str, give_up: threading.Event | None = None) -> int:
    """Upload every regular file under `local_dir` to ``{prefix}/{relative path}``; the number of files.
    Symbolic links are not followed (a job cannot make the agent upload what lies outside)."""
    files = files_under(local_dir)
    if not files:
        return 0
    with_retries(blobs.create_container, "creating the output container", give_up)
    named = [(relative, f"{prefix.rstrip('/')}/{relative}") for relative in files]
    uploaded = 0
    for start in range(0, len(named), UPLOAD_BATCH):
        batch = named[start:start + UPLOAD_BATCH]
        with_retries(lambda batch=batch: blobs.prepare([name for _, name in batch]), "getting upload access",
                     give_up)
        for relative, name in batch:
            def put(relative: str = relative, name: str = name) -> bool:
                try:
                    data = open_under(local_dir, relative)
                except OSError as error:  # replaced by a link, a FIFO or nothing since it was listed
                    log.warning("not uploading %s: %s", name, error)
                    return False
                with data:
                    blobs.blob(name).upload_blob(data, overwrite=True, **NO_SDK_RETRY)
                return True
            uploaded += with_retries(put, f"uploading {name}", give_up)
    return uploaded


def _stamp(st: os.stat_result) -> list[float]:
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
            try:
                relative_parts(blob.name, "blob name")
            except PathEscape as error:
                log.warning("not downloading a blob of %s: %s", self.container.container_name, error)
                continue
            known = manifest.get(blob.name)
            st = stat_under(self.local_dir, blob.name)
            if known and known.get("etag") == blob.etag and st and _stamp(st) == known.get("stamp"):
                continue

            def fetch(name: str = blob.name) -> list[float]:
                with create_under(self.local_dir, name) as out:
                    self.container.download_blob(name, **NO_SDK_RETRY).readinto(out)
                    out.flush()
                    return _stamp(os.fstat(out.fileno()))
            manifest[blob.name] = {"etag": blob.etag, "stamp": with_retries(fetch, f"downloading {blob.name}",
                                                                             self.give_up)}
            fetched += 1
        self._save(manifest)
        return fetched

    def upload_changes(self) -> int:
        """Upload new and changed files; the number uploaded."""
        manifest = self._manifest()
        uploaded = 0
        for name in files_under(self.local_dir):
            known = manifest.get(name)
            st = stat_under(self.local_dir, name)
            if st is None or (known and known.get("stamp") == _stamp(st)):
                continue

            def put(name: str = name) -> tuple[str, list[float]] | None:
                try:
                    data = open_under(self.local_dir, name)
                except OSError as error:  # replaced by a link, a FIFO or nothing since it was listed
                    log.warning("not uploading %s to a mounted container: %s", name, error)
                    return None
                with data:
                    stamp = _stamp(os.fstat(data.fileno()))
                    blob = self.container.get_blob_client(name)  # ContainerClient.upload_blob returns no etag
                    return str(blob.upload_blob(data, overwrite=True, **NO_SDK_RETRY)["etag"]), stamp
            done = with_retries(put, f"uploading {name} to a mounted container", self.give_up)
            if done is None:
                continue
            manifest[name] = {"etag": done[0], "stamp": done[1]}
            uploaded += 1
        self._save(manifest)
        return uploaded
