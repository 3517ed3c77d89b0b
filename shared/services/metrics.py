"""Job metrics: read from each task's streamed stdout, kept per job in the `jobmetrics` table (owned here).

Tasks log metrics as lines on stdout (`shared.domain.metrics`); the node agent already streams stdout
into append blobs under the job's output prefix. So the service, not the node, reads the metrics: when
someone asks for them (`job_metrics`), it reads each stdout blob from where it stopped last time and
stores the new points. Nothing runs for a job nobody looks at, nodes need no new channel or right, and
the logs stay the one source: a read that dies half way is simply done again.

Rows of a job's partition (``{job key}|{jobOutputDirectoryPathSegment}``: a job created again under
the same name starts afresh):
- ``c|{file}``: the cursor of one stdout file: the bytes read (``offset``), a digest of the bytes just
  before it (``tail``), the blob's creation time (``created``), the points per name so far (``counts``,
  JSON), the points stored (``stored``), the restarts seen (``run``). A retried task starts its stdout
  anew, and its metrics start anew with it: a new creation time, a file shorter than the offset or other
  bytes before it say so;
- ``p|{name}|{file}|{run:06d}|{offset of the line's end:012d}|{index:03d}``: one point (``name``,
  ``source``, ``step``, ``value``, ``run``: the cursor's count of restarts when it was read). Row keys
  are the points' identity, so a repeated write changes nothing; the cursor moves in the same
  entity-group transaction as the points it covers, under its ETag, so two readers never store a point
  twice or skip one.
A file contributes at most MAX_POINTS_PER_FILE points; later ones are not stored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared import ports
from shared.adapters import storage
from shared.config import Settings
from shared.domain import metrics, resources
from shared.domain.errors import bad_request
from shared.domain.keys import JobRef
from shared.domain.validation import STDOUTERR
from shared.ports.contract import BlobInfo, Missing, Table
from shared.ports.rows import Delete, Insert, Query, Replace, Row, StaleEtag, Upsert, Write, key_fields, prefix_range
from shared.services.jobs import get_doc

T_METRICS = "jobmetrics"
STDOUT_FILE = re.compile(r"stdout(-(?!job_prep)[A-Za-z0-9_-]+)?\.txt")  # stdout.txt, stdout-3.txt, stdout-wk-0.txt
MAX_POINTS_PER_FILE = 20_000
MAX_READ_BYTES = 8 * 1024 * 1024  # read of one file per request; the rest comes with the next request
TAIL = 64  # bytes before a cursor that must be unchanged for the file to be the one read
BATCH = 99  # points per transaction, beside their cursor (100 operations at most)
CURSOR, POINT = "c|", "p|"
ENDED = ("succeeded", "failed")


@dataclass
class Series:
    name: str
    source: str  # the stdout file its points were read from
    points: list[dict[str, Any]] = field(default_factory=list)  # {"step", "value"}, by step

    def render(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "points": self.points}


@dataclass
class Cursor:
    file: str
    offset: int = 0
    created: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    tail: str = ""  # digest of the (up to TAIL) bytes before `offset`
    run: int = 0  # how many times the file was found started anew
    etag: str | None = None  # None: no row yet

    @classmethod
    def of(cls, entity: Row) -> Cursor:
        return cls(entity["RowKey"][len(CURSOR):], int(entity.get("offset") or 0), str(entity.get("created") or ""),
                   json.loads(entity.get("counts") or "{}"), int(entity.get("stored") or 0),
                   str(entity.get("tail") or ""), int(entity.get("run") or 0), entity.etag)

    def entity(self, pk: str) -> dict[str, Any]:
        return {"PartitionKey": pk, "RowKey": CURSOR + self.file, "offset": str(self.offset), "created": self.created,
                "counts": json.dumps(self.counts, separators=(",", ":")), "stored": self.stored, "tail": self.tail,
                "run": self.run}

    def write(self, pk: str) -> Write:
        """The cursor's write, conditional on the row it was read from (or on there being none)."""
        if self.etag is None:
            return Insert(*key_fields(self.entity(pk)))
        return Replace(*key_fields(self.entity(pk)), self.etag)


def check_name(name: str | None) -> str | None:
    if name is not None and not metrics.valid_name(name):
        raise bad_request(f"The parameter 'name' has an invalid value '{name[:200]}': a metric name is 1 to 128 of "
                          "letters, digits and _ . - / (not starting with . - /).", "name", code="InvalidParameter")
    return name


def job_metrics(settings: Settings, ref: JobRef, name: str | None = None) -> list[Series]:
    """The job's metric series (only `name`'s when given), after reading what its tasks wrote since last time."""
    check_name(name)
    doc = get_doc(settings, ref)
    props = doc.data["properties"]
    pk = f"{ref.key}|{props['jobOutputDirectoryPathSegment']}"
    ended = resources.render_job(doc.data)["properties"]["executionState"] in ENDED
    prefix = storage.output_prefix(ref.experiment.workspace.workspace, ref.experiment.name, ref.name,
                                   props["jobOutputDirectoryPathSegment"]) + f"/{STDOUTERR}/"
    client = _table(settings)
    cursors = {c.file: c for c in map(Cursor.of, _query(client, pk, CURSOR))}
    for blob in stdout_blobs(settings, prefix):
        file = blob.name[len(prefix):]
        _read_file(settings, client, pk, blob, cursors.get(file) or Cursor(file), ended)
    return read_series(client, pk, name)


def stdout_blobs(settings: Settings, prefix: str) -> list[BlobInfo]:
    try:
        blobs = list(ports.of(settings.storage_connection_string).blobs.list(storage.C_OUTPUTS, prefix))
    except Missing:
        return []
    return [b for b in blobs if STDOUT_FILE.fullmatch(b.name[len(prefix):])]


def read_series(client: Table, pk: str, name: str | None = None) -> list[Series]:
    runs = {c.file: c.run for c in map(Cursor.of, _query(client, pk, CURSOR))}
    series: dict[tuple[str, str], Series] = {}
    for row in _query(client, pk, POINT + (f"{_name_key(name)}|" if name else "")):
        source = str(row["source"])
        if runs.get(source) != row.get("run"):
            continue  # of an earlier run of the task, whose stdout was started anew
        key = (str(row["name"]), source)
        series.setdefault(key, Series(*key)).points.append(
            {"step": int(row["step"]), "value": float(row["value"]), "_order": row["RowKey"]})
    out = [series[k] for k in sorted(series)]
    for s in out:
        s.points.sort(key=lambda p: (p["step"], p["_order"]))
        for p in s.points:
            del p["_order"]
    return out


# --- reading one stdout file ----------------------------------------------------------------------

def _read_file(settings: Settings, client: Table, pk: str, blob: BlobInfo, cursor: Cursor, ended: bool) -> None:
    size, created = blob.size, resources.iso(blob.created)
    if cursor.etag is not None and (cursor.created, cursor.offset) == (created, size):
        return  # nothing new
    restarted = cursor.etag is not None and (cursor.created != created or size < cursor.offset)
    base = 0 if restarted else max(0, cursor.offset - TAIL)
    data = _read(settings, blob.name, base, min(size, cursor.offset + MAX_READ_BYTES) if not restarted else 0)
    if not restarted and _digest(data[:cursor.offset - base]) != cursor.tail:
        restarted = True  # the bytes before the cursor are not the ones read: the file was started anew
    if restarted:
        cursor = Cursor(cursor.file, run=cursor.run + 1, etag=cursor.etag)
        base, data = 0, _read(settings, blob.name, 0, min(size, MAX_READ_BYTES))
    cursor.created = created
    start = cursor.offset
    parsed = metrics.parse(data[start - base:], start, cursor.counts, final=ended and base + len(data) >= size)
    if not restarted and cursor.etag is not None and not parsed.consumed:
        return  # only the start of a line so far

    def tail(offset: int) -> str:
        return _digest(data[max(0, offset - TAIL) - base:offset - base])
    try:
        _store(client, pk, cursor, parsed, tail)
    except StaleEtag:
        return  # another reader moved the cursor first: what it stored covers these points
    if restarted:
        _forget_earlier_runs(client, pk, cursor.file, cursor.run)


def _read(settings: Settings, name: str, start: int, end: int) -> bytes:
    if end <= start:
        return b""
    return ports.of(settings.storage_connection_string).blobs.read(storage.C_OUTPUTS, name, start, end - start)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _store(client: Table, pk: str, cursor: Cursor, parsed: metrics.Parsed, tail: Callable[[int], str]) -> None:
    """Write the parsed points, at most BATCH per transaction, each transaction moving the cursor past them."""
    room = max(0, MAX_POINTS_PER_FILE - cursor.stored)
    points, counts = parsed.points, dict(cursor.counts)
    start = cursor.offset
    while True:
        batch = _line_aligned(points[:BATCH], points[BATCH:BATCH + 1])
        points = points[len(batch):]
        for p in batch:
            counts[p.name] = counts.get(p.name, 0) + 1
        kept = batch[:room]
        room -= len(kept)
        last = not points
        cursor.offset = start + parsed.consumed if last else batch[-1].end
        cursor.counts = dict(parsed.counts) if last else dict(counts)
        cursor.stored += len(kept)
        cursor.tail = tail(cursor.offset)
        ops = [cursor.write(pk), *(Upsert(*key_fields(_point(pk, cursor, p)), merge=False) for p in kept)]
        cursor.etag = client.transact(ops)[0]
        if last:
            return


def _line_aligned(batch: list[metrics.Point], following: list[metrics.Point]) -> list[metrics.Point]:
    """The batch without its last line's points when that line goes on into the next batch (a cursor stops
    between lines); the whole batch when one line holds more points than a batch (the rest are dropped)."""
    if not following or not batch or following[0].end != batch[-1].end:
        return batch
    cut = len(batch)
    while cut > 0 and batch[cut - 1].end == following[0].end:
        cut -= 1
    return batch[:cut] or batch


def _point(pk: str, cursor: Cursor, p: metrics.Point) -> dict[str, Any]:
    return {"PartitionKey": pk,
            "RowKey": f"{POINT}{_name_key(p.name)}|{cursor.file}|{cursor.run:06d}|{p.end:012d}|{p.index:03d}",
            "name": p.name, "source": cursor.file, "step": p.step, "value": float(p.value), "run": cursor.run}


def _forget_earlier_runs(client: Table, pk: str, file: str, run: int) -> None:
    stale = [row for row in _query(client, pk, POINT) if row.get("source") == file and row.get("run") != run]
    for i in range(0, len(stale), 100):
        try:
            client.transact([Delete(pk, row.rk) for row in stale[i:i + 100]])
        except StaleEtag:
            continue  # another reader deleted some of them first; reads leave such rows out anyway


# --- the table ------------------------------------------------------------------------------------

def _name_key(name: str) -> str:
    return name.replace("/", ":")  # '/' may not stand in a row key; ':' is never in a name


def _table(settings: Settings) -> Table:
    conn = settings.storage_connection_string
    _created(conn)
    return ports.of(conn).table(T_METRICS)


@lru_cache(maxsize=16)
def _created(conn: str) -> None:
    """The table exists (made once per process and account: it is not among the tables the stack makes)."""
    ports.of(conn).table(T_METRICS).ensure()


def _query(client: Table, pk: str, prefix: str) -> list[Row]:
    return list(client.query(Query(pk=pk, rk_range=prefix_range(prefix))))
