"""Output file listings in blob storage, one level at a time: a job's listOutputFiles, and a cluster's
node setup task output (listNodeSetupFiles, an addition beyond 2018-05-01).

listOutputFiles: `stdouterr` lists ``{output prefix}/stdouterr/``; an output directory id of the job
lists ``{output prefix}/outputs/{ID}/`` (see `storage.output_prefix`). `directory` walks down. Names
are relative to the listed directory, as the real service answered (`directory=afs` listed
`job_afs.txt`, not `afs/job_afs.txt`): clients look a file up by its name in the listing of its
directory.

listNodeSetupFiles: one directory per node that ran the cluster's setup task, holding what the node
streamed (``stdout.txt``, ``stderr.txt``, from `storage.setup_output_prefix`), as Batch AI laid the
setup task's output out under ``<stdOutErrPathPrefix>/<stdOutErrPathSuffix>/``.

Every file carries a read-only SAS URL expiring after `linkexpiryinminutes` (5..600, default 60).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.adapters import output_blobs, storage
from shared.config import Settings
from shared.domain import resources, validation
from shared.domain.errors import bad_request, not_found
from shared.domain.keys import ClusterRef, JobRef
from shared.domain.validation import STDOUTERR
from shared.services.api_common import Page
from shared.services.clusters import get_doc as get_cluster_doc
from shared.services.jobs import get_doc


def _expiry(value: str | None) -> int:
    return validation.int_parameter("linkexpiryinminutes", value, 60, 5, 600)


def _directory(value: str | None) -> str:
    parts = [p for p in (value or ".").replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise bad_request("The parameter 'directory' must not contain '..'.", "directory", code="InvalidParameter")
    return "/".join(parts)


def _listing(settings: Settings, prefix: str, expiry: str | None, size: int, token: str | None,
             now: datetime) -> Page:
    """The files and directories right under `prefix` (ending in '/'), named relative to it."""
    minutes = _expiry(expiry)
    conn = settings.storage_connection_string
    entries, nxt = output_blobs.list_level(conn, storage.C_OUTPUTS, prefix, size, token)
    expires = now + timedelta(minutes=minutes)
    items = []
    for e in entries:
        name = e.name[len(prefix):]
        if e.is_dir:
            items.append({"name": name, "fileType": "directory"})
            continue
        items.append({"name": name, "fileType": "file",
                      "downloadUrl": output_blobs.read_url(conn, storage.C_OUTPUTS, e.name, expires),
                      "properties": {"lastModified": resources.iso(e.last_modified) if e.last_modified else None,
                                     "contentLength": e.size}})
    return Page(items, nxt)


def list_output_files(settings: Settings, ref: JobRef, output_id: str | None, directory: str | None,
                      expiry: str | None, size: int, token: str | None, now: datetime) -> Page:
    _expiry(expiry)
    doc = get_doc(settings, ref)
    props = doc.data["properties"]
    ids = {d["id"].lower(): d["id"] for d in props.get("outputDirectories") or []}
    if not output_id:
        raise bad_request("The parameter 'outputdirectoryid' is required.", "outputdirectoryid",
                          code="InvalidParameter")
    if output_id.lower() == STDOUTERR:
        sub = STDOUTERR
    elif output_id.lower() in ids:
        sub = f"outputs/{ids[output_id.lower()]}"
    else:
        valid = ", ".join([STDOUTERR, *ids.values()])
        raise bad_request(f"The parameter 'outputdirectoryid' has an unknown value '{output_id}'; the job has: "
                          f"{valid}.", "outputdirectoryid", code="InvalidParameter")
    ws, exp = ref.experiment.workspace.workspace, ref.experiment.name
    base = f"{storage.output_prefix(ws, exp, ref.name, props['jobOutputDirectoryPathSegment'])}/{sub}/"
    rel = _directory(directory)
    return _listing(settings, base + (f"{rel}/" if rel else ""), expiry, size, token, now)


def list_setup_files(settings: Settings, ref: ClusterRef, directory: str | None, expiry: str | None, size: int,
                     token: str | None, now: datetime) -> Page:
    _expiry(expiry)
    if get_cluster_doc(settings, ref) is None:
        raise not_found("cluster", ref.name)
    rel = _directory(directory)
    if not rel:  # the nodes' directories
        nodes = storage.setup_output_prefix(ref.workspace.workspace, ref.name, "-").rsplit("/", 2)[0]
        return _listing(settings, f"{nodes}/", expiry, size, token, now)
    node, _, inner = rel.partition("/")
    base = storage.setup_output_prefix(ref.workspace.workspace, ref.name, node)
    return _listing(settings, f"{base}/{inner}/" if inner else f"{base}/", expiry, size, token, now)
