"""A job's files for the dashboard: the tail of its stdout/stderr/execution.log, and its output files, read
from the service's blob storage where the node agents stream and upload them (`storage.output_prefix`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters import output_blobs, storage
from shared.config import Settings
from shared.domain.errors import bad_request, not_found
from shared.domain.keys import JobRef
from shared.domain.validation import STDOUTERR
from shared.services.jobs import get_doc

TAIL_BYTES = 24 * 1024
MAX_FILES = 300  # files listed per output directory


@dataclass(frozen=True)
class OutputFile:
    directory: str  # the output directory id ("stdouterr" for the logs)
    path: str  # relative to it
    size: int | None
    modified: datetime | None


@dataclass(frozen=True)
class Tail:
    file: str
    text: str
    size: int  # the whole file's
    cut: bool  # only the end is shown


def _base(settings: Settings, ref: JobRef) -> tuple[str, list[str]]:
    """The job's output prefix in C_OUTPUTS and its output directory ids (stdouterr first)."""
    props = get_doc(settings, ref).data["properties"]
    prefix = storage.output_prefix(ref.experiment.workspace.workspace, ref.experiment.name, ref.name,
                                   props["jobOutputDirectoryPathSegment"])
    return prefix, [STDOUTERR, *(d["id"] for d in props.get("outputDirectories") or [])]


def _directory_prefix(prefix: str, directory: str) -> str:
    return f"{prefix}/{STDOUTERR}/" if directory == STDOUTERR else f"{prefix}/outputs/{directory}/"


def log_files(settings: Settings, ref: JobRef) -> list[str]:
    """The files of the job's stdouterr directory: stdout first, then stderr, then the others by name."""
    prefix, _ = _base(settings, ref)
    entries, _ = output_blobs.list_level(settings.storage_connection_string, storage.C_OUTPUTS,
                                         _directory_prefix(prefix, STDOUTERR), MAX_FILES, None)
    names = [e.name.rsplit("/", 1)[-1] for e in entries if not e.is_dir]
    order = {"stdout.txt": 0, "stderr.txt": 1, "execution.log": 2}
    return sorted(names, key=lambda n: (order.get(n, 3), n))


def tail(settings: Settings, ref: JobRef, file: str) -> Tail:
    """The last TAIL_BYTES of one stdouterr file (from a whole line on)."""
    if "/" in file or file in ("", ".", ".."):
        raise bad_request("The parameter 'file' must name a file of the job's stdouterr directory.", "file")
    prefix, _ = _base(settings, ref)
    blob = storage.container(settings.storage_connection_string, storage.C_OUTPUTS).get_blob_client(
        _directory_prefix(prefix, STDOUTERR) + file)
    try:
        size = int(blob.get_blob_properties().size or 0)
        start = max(0, size - TAIL_BYTES)
        data = blob.download_blob(offset=start, length=size - start).readall() if size > start else b""
    except ResourceNotFoundError:
        return Tail(file, "", 0, False)
    if start > 0 and b"\n" in data:
        data = data[data.index(b"\n") + 1:]
    return Tail(file, data.decode("utf-8", errors="replace"), size, start > 0)


def files(settings: Settings, ref: JobRef) -> list[OutputFile]:
    """Every file of the job's output directories and stdouterr (at most MAX_FILES per directory)."""
    prefix, directories = _base(settings, ref)
    container = storage.container(settings.storage_connection_string, storage.C_OUTPUTS)
    found: list[OutputFile] = []
    for directory in directories:
        base = _directory_prefix(prefix, directory)
        for i, blob in enumerate(container.list_blobs(name_starts_with=base)):
            if i >= MAX_FILES:
                break
            found.append(OutputFile(directory, blob.name[len(base):], blob.size, blob.last_modified))
    return found


def blob_name(settings: Settings, ref: JobRef, directory: str, path: str) -> str:
    """The blob of one output file, checked: a directory of the job, a path with no '..', a file that exists."""
    prefix, directories = _base(settings, ref)
    known = {d.lower(): d for d in directories}
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if directory.lower() not in known or not parts or ".." in parts:
        raise bad_request("The output directory or path does not name a file of this job.", "path")
    name = _directory_prefix(prefix, known[directory.lower()]) + "/".join(parts)
    if not storage.container(settings.storage_connection_string, storage.C_OUTPUTS).get_blob_client(name).exists():
        raise not_found("output file", path)
    return name
