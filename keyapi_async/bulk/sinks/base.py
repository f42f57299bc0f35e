"""Where crawled records go: JSONL (default), CSV or Parquet files, or any object with
async ``write(records)`` and ``close()``.

Durability, the same for every built-in sink: each batch of records is encoded in memory
and handed to the kernel in one ``os.write`` on a file opened ``O_APPEND``, so a kill -9
loses at most the batches not yet written and never leaves a half-written record except
in the rare case of a write torn by the kill itself; :meth:`FileSink.recover` cuts such a
torn tail off before a resumed crawl appends. ``os.fsync`` (protection against a power
loss or kernel crash, not against kill -9, which cannot drop what the kernel holds) runs
every ``fsync_interval`` seconds (default 1 s; 0 for every batch, None never) and on
close. Measured on the development VM: a 5 KB append costs ~15 us, an fsync ~200 us.

Snapshots: an output path may hold ``{date}``, replaced when the sink is made by the UTC
day (ISO, ``2026-11-21``) or the ``date`` given, so a daily crawl writes one partition a
day, each with its own state and resume (see :func:`expand_date`).

Parquet files get their footer only when closed, so a killed writer leaves an unreadable
file. :class:`ParquetSink` therefore writes a directory of closed part files, and journals
the records of the part being filled to a JSONL file beside it; a resumed run turns a
leftover journal into a part. A kill -9 thus loses no more than with the other sinks.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import importlib
import io
import os
import re
import time
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec
import msgspec.inspect as mi

from ...pipeline.errors import OutputError, OutputLockedError, OutputWriteError
from ...pipeline.models import LINEAGE_FIELDS, RankedVideo, VideoDetail
from ..filelock import FileLock, LockHeld

__all__ = [
    "CsvSink",
    "FileSink",
    "JsonlSink",
    "MissingExtraError",
    "ParquetSink",
    "Sink",
    "expand_date",
    "output_write_error",
]

_CHUNK = 1 << 24  # bytes read at a time when scanning an existing output


@runtime_checkable
class Sink(Protocol):
    """Anything a crawl can write records to: async ``write(records)`` and ``close()``.

    Two optional methods, looked up with ``getattr`` and never required, let a sink of your
    own (a database table, say) do what the built-in file sinks do with the files beside
    their output:

    ``async def write_missing(self, ids: Sequence[str]) -> None``
        The ids of one batch that the API does not know, called once per batch (at most
        10 ids a call, so nothing accumulates), after that batch's records were written.
        A details crawl's missing ids reach the sink only this way; ``report.missing`` is
        just their count.
    ``def resume_ids(self) -> AsyncIterator[str]``
        The ids a resumed details crawl (``resume=True``) must skip: those stored, and
        those recorded missing. Called once, before the first request; the ids are kept
        in a compact set (about 9 bytes an id). Not called with ``resume=False``.

    An ``OSError`` raised by ``write`` or ``write_missing`` (a full disk, say) stops the
    crawl like a full disk stops a file sink: :class:`~keyapi_async.OutputWriteError`
    with the partial report.
    """

    async def write(self, records: Sequence[Any]) -> None:
        """Store one batch of records (msgspec Structs)."""

    async def close(self) -> None:
        """Flush and release everything; called once, also after an error."""


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class _IdOnly(msgspec.Struct):
    video_id: str | None = None


_ID_LINES = msgspec.json.Decoder(_IdOnly)


#: The placeholder of an output path replaced by a day (see :func:`expand_date`).
DATE_FIELD = "{date}"


def expand_date(path: str | os.PathLike[str], day: date | str | None = None) -> Path:
    """``path`` with every ``{date}`` replaced by ``day`` (a ``datetime.date`` or an ISO
    ``YYYY-MM-DD`` string), by default today's UTC date: ``videos/{date}.parquet`` ->
    ``videos/2026-11-21.parquet``. A path without ``{date}`` comes back unchanged."""
    text = os.fspath(path)
    if DATE_FIELD not in text:
        return Path(text)
    if day is None:
        day = datetime.now(timezone.utc).date()
    elif isinstance(day, str):
        try:
            day = date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"expected a day like 2026-11-21, got {day!r}") from None
    if isinstance(day, datetime):
        day = day.date()
    return Path(text.replace(DATE_FIELD, day.isoformat()))


class FileSink:
    """Base of the built-in sinks: one output path, durable batch appends, resume support.

    ``{date}`` in ``path`` becomes ``date`` (default: today's UTC day): see
    :func:`expand_date`. :attr:`path` is the expanded path.

    A crawl calls :meth:`acquire` (check the path, lock it), then :meth:`recover` (resume)
    or :meth:`discard` (start over) before the first :meth:`write`, and :meth:`release`
    after :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync_interval: float | None = 1.0,
        date: date | str | None = None,
    ):
        self.path = expand_date(path, date)
        self.fsync_interval = fsync_interval
        self.records_written = 0
        self._fd: int | None = None
        self._last_sync = 0.0
        # Beside the real path: two spellings of one output (a symlink) share one lock.
        real = Path(os.path.realpath(self.path))
        self._lock = FileLock(real.with_name(real.name + ".lock"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # -- the resume protocol -------------------------------------------------------

    @property
    def state_path(self) -> Path:
        """The crawl's state file for this output."""
        return self.path.with_name(self.path.name + ".state.json")

    @property
    def lock_path(self) -> Path:
        """The lock file beside the output (present only while a crawl holds it, or left by a
        killed one, which locks nothing)."""
        return self._lock.path

    @property
    def locked(self) -> bool:
        """Whether this sink holds its output's lock."""
        return self._lock.held

    def acquire(self, *, resume: bool = True) -> None:
        """Check that the output can be written, then lock it (with its state files) until
        :meth:`release`. Raises :class:`~keyapi_async.OutputError` (a missing or read-only
        directory, a directory where a file belongs or the reverse, or, when resuming, a
        non-empty output with no state file: not written by a crawl) and
        :class:`~keyapi_async.OutputLockedError` (another crawl holds it). Idempotent."""
        if self._lock.held:
            return
        self._check_kind()
        parent = self.path.parent
        if not parent.is_dir():
            what = f"{parent} is not a directory" if parent.exists() else (
                f"directory {parent} does not exist"
            )
            raise OutputError(f"cannot write {self.path}: {what}", path=str(self.path))
        try:
            self._lock.acquire()
        except LockHeld:
            raise OutputLockedError(
                f"{self.path} is being written by another crawl (it holds {self.lock_path})",
                path=str(self.path),
            ) from None
        except OSError as exc:
            raise _unwritable(self.path, parent, exc) from None
        try:
            self._check_writable(parent)
            self._check_owner(resume)
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        """Drop the output's lock (after :meth:`close`)."""
        self._lock.release()

    def _check_kind(self) -> None:
        if self.path.is_dir():
            raise OutputError(
                f"{self.path} is a directory; name the output file (only Parquet output "
                "is a directory)", path=str(self.path),
            )

    def _check_writable(self, parent: Path) -> None:
        # The lock file may be a leftover of a killed run, so its creation proved nothing.
        if not os.access(parent, os.W_OK | os.X_OK):
            raise _unwritable(self.path, parent, None)
        if self.path.is_file():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
            except OSError as exc:
                raise _unwritable(self.path, self.path, exc) from None

    def _has_content(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def _check_owner(self, resume: bool) -> None:
        if resume and not self.state_path.exists() and self._has_content():
            raise OutputError(
                f"{self.path} exists but was not written by a keyapi-async crawl (there is "
                f"no {self.state_path.name} beside it); move it away or choose another "
                "output, or overwrite it with --no-resume (resume=False)",
                path=str(self.path),
            )

    def exists(self) -> bool:
        """Whether a previous run left output here."""
        return self.path.exists()

    def recover(self) -> Iterator[str | None]:
        """Repair a torn tail and yield the ``video_id`` of every record already written."""
        raise NotImplementedError

    def discard(self) -> None:
        """Remove what a previous run wrote."""
        self.path.unlink(missing_ok=True)

    # -- writing -------------------------------------------------------------------

    def _open(self, path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = self._open(self.path)
        write_all(self._fd, data)
        self._maybe_sync(self._fd)

    def _maybe_sync(self, fd: int) -> None:
        if self.fsync_interval is None:
            return
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_interval:
            os.fsync(fd)
            self._last_sync = now

    async def write(self, records: Sequence[Any]) -> None:
        """Append one batch of records in a single write."""
        raise NotImplementedError

    async def close(self) -> None:
        """fsync and close the file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if self.fsync_interval is not None:
                    os.fsync(fd)
            finally:
                os.close(fd)

    async def __aenter__(self) -> FileSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _unwritable(path: Path, where: Path, exc: OSError | None) -> OutputError:
    reason = exc.strerror if exc is not None and exc.strerror else "permission denied"
    return OutputError(
        f"cannot write {path}: {where}: {reason}", path=str(path),
        errno=None if exc is None else exc.errno,
    )


def output_write_error(target: object, exc: OSError) -> OutputWriteError:
    """The typed error for a failed write of ``target`` (a path, or a custom sink).

    On a full disk the message names the file system (its mount point) and its free
    space, so the user knows which disk to clear.
    """
    reason = exc.strerror or str(exc)
    message = f"cannot write {target}: {reason}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and isinstance(target, Path):
        message += _space_note(target)
    return OutputWriteError(message, path=str(target), errno=exc.errno)


def _space_note(path: Path) -> str:
    try:
        mount = Path(os.path.abspath(path)).parent
        while not os.path.ismount(mount):
            mount = mount.parent
        stat = os.statvfs(mount)
    except (OSError, AttributeError):  # statvfs: not on Windows
        return ""
    free = stat.f_bavail * stat.f_frsize
    return f" (the file system mounted at {mount} has {_size(free)} free)"


def _size(n: int) -> str:
    value, unit = float(n), "bytes"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n:,} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"


def write_all(fd: int, data: bytes) -> None:
    """Append ``data`` to ``fd`` (opened ``O_APPEND``) whole or not at all.

    ``os.write`` until every byte is written (a write may be partial). If a later write
    fails (a disk filling up writes what fits, then raises ENOSPC), the bytes already
    written are cut off again, so a failed append leaves no torn record behind. The
    common case, one complete write, costs no extra system call.
    """
    written = os.write(fd, data)
    if written == len(data):
        return
    start = os.lseek(fd, 0, os.SEEK_CUR) - written
    view = memoryview(data)[written:]
    try:
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        with contextlib.suppress(OSError):  # if it fails, the resume cuts the tail off
            os.ftruncate(fd, start)
        raise


def _truncate_torn_lines(path: Path) -> int:
    """Cut everything after the last newline; return the file's new size."""
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - 65536)
            handle.seek(start)
            block = handle.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        if end != size:
            handle.truncate(end)
        return end


def _jsonl_ids(path: Path) -> Iterator[str | None]:
    """The video_id of every line of a JSONL file, decoded in large chunks."""
    with path.open("rb") as handle:
        rest = b""
        line_base = 1
        while True:
            chunk = handle.read(_CHUNK)
            buf = rest + chunk
            cut = buf.rfind(b"\n") + 1 if chunk else len(buf)
            rest = buf[cut:]
            if cut:
                try:
                    items = _ID_LINES.decode_lines(buf[:cut])
                except msgspec.DecodeError as exc:
                    raise ValueError(
                        f"{path}: corrupt record near line {line_base}: {exc}; "
                        "move the file away or crawl with resume disabled"
                    ) from None
                line_base += buf.count(b"\n", 0, cut)
                for item in items:
                    yield item.video_id
            if not chunk:
                return


class JsonlSink(FileSink):
    """One JSON object a line, encoded by msgspec (datetimes as RFC 3339 strings)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync_interval: float | None = 1.0,
        date: date | str | None = None,
    ):
        super().__init__(path, fsync_interval=fsync_interval, date=date)
        self._encoder = msgspec.json.Encoder()

    def recover(self) -> Iterator[str | None]:
        """Repair a torn tail and yield the ``video_id`` of every line already written."""
        if not self.path.exists():
            return iter(())
        _truncate_torn_lines(self.path)
        return _jsonl_ids(self.path)

    async def write(self, records: Sequence[Any]) -> None:
        """Append the batch as JSON lines, one write."""
        if records:
            self._append(self._encoder.encode_lines(records))
            self.records_written += len(records)


def _columns(record: Any) -> list[str]:
    """The columns of a batch starting with ``record``: every field, but the lineage
    fields only when the crawl set them (a crawl sets them on all records or none)."""
    names = [f.name for f in msgspec.structs.fields(type(record))]
    if not _has_lineage(record):
        names = [n for n in names if n not in LINEAGE_FIELDS]
    return names


def _has_lineage(record: Any) -> bool:
    return getattr(record, LINEAGE_FIELDS[0], msgspec.UNSET) is not msgspec.UNSET


class CsvSink(FileSink):
    """Flat CSV with a header: one column per field; lists as JSON text, None empty,
    booleans ``true``/``false``, datetimes in ISO 8601."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync_interval: float | None = 1.0,
        date: date | str | None = None,
    ):
        super().__init__(path, fsync_interval=fsync_interval, date=date)
        self._encoder = msgspec.json.Encoder()
        self._header: list[str] | None = None

    def recover(self) -> Iterator[str | None]:
        """Repair a torn last row and yield the ``video_id`` of every row already written."""
        if not self.path.exists():
            return iter(())
        rows, good_end = self._scan()
        with self.path.open("r+b") as handle:
            if handle.seek(0, os.SEEK_END) != good_end:
                handle.truncate(good_end)
        return iter(rows)

    def _scan(self) -> tuple[list[str | None], int]:
        # Rows may span lines (quoted newlines), so lines are fed to csv.reader one by one
        # while counting bytes: when a row comes out, `consumed` is where it ends.
        ids: list[str | None] = []
        consumed = 0
        good_end = 0
        column: int | None = None

        def lines() -> Iterator[str]:
            nonlocal consumed
            with self.path.open("rb") as handle:
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        return  # torn: a row is complete only with its newline
                    consumed += len(raw)
                    yield raw.decode("utf-8")

        reader = csv.reader(lines(), strict=True)
        try:
            for row in reader:
                if self._header is None:
                    self._header = row
                    column = row.index("video_id") if "video_id" in row else None
                    good_end = consumed
                    continue
                if len(row) != len(self._header):
                    break  # a torn row that happened to end on a newline
                ids.append((row[column] or None) if column is not None else None)
                good_end = consumed
        except csv.Error:
            pass  # an unterminated quote: the torn tail
        return ids, good_end

    async def write(self, records: Sequence[Any]) -> None:
        """Append the batch as CSV rows (with the header first in a new file), one write."""
        if not records:
            return
        columns = _columns(records[0])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = None
        if self._header is None and (not self.path.exists() or self.path.stat().st_size == 0):
            writer.writerow(columns)
            header = columns
        elif self._header is not None and self._header != columns:
            raise ValueError(
                f"{self.path} has other columns than {type(records[0]).__name__} records; "
                "write to another file or crawl with resume disabled"
            )
        encode = self._encoder.encode
        for row in msgspec.to_builtins(records):
            writer.writerow([_cell(row.get(name), encode) for name in columns])
        self._append(out.getvalue().encode("utf-8"))
        if header is not None:
            self._header = header  # only now: a failed first append wrote no header
        self.records_written += len(records)


def _cell(value: Any, encode: Any) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (list, dict)):
        return encode(value).decode("utf-8")
    return value


# -- Parquet -----------------------------------------------------------------------

_RECORD_TYPES: dict[str, type[msgspec.Struct]] = {
    "VideoDetail": VideoDetail,
    "RankedVideo": RankedVideo,
}
_PART = re.compile(r"part-(\d{6})\.parquet")
_JOURNAL = re.compile(r"_part-(\d{6})\.(\w+)\.jsonl")


def _require_pyarrow() -> tuple[Any, Any]:
    try:
        pa = importlib.import_module("pyarrow")
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise MissingExtraError(
            "ParquetSink needs pyarrow: pip install 'keyapi-async[parquet]'"
        ) from None
    return pa, pq


def _arrow_type(pa: Any, t: mi.Type) -> Any:
    if isinstance(t, mi.UnionType):
        options = [o for o in t.types if not isinstance(o, mi.NoneType)]
        # Wire-format unions (JSON text | list) hold lists once decoded; ids prefer text.
        lists = [o for o in options if isinstance(o, mi.ListType)]
        strings = [o for o in options if isinstance(o, mi.StrType)]
        return _arrow_type(pa, (lists or strings or options)[0])
    if isinstance(t, mi.StrType):
        return pa.string()
    if isinstance(t, mi.BoolType):
        return pa.bool_()
    if isinstance(t, mi.IntType):
        return pa.int64()
    if isinstance(t, mi.FloatType):
        return pa.float64()
    if isinstance(t, mi.DateTimeType):
        return pa.timestamp("us", tz="UTC")
    if isinstance(t, mi.ListType):
        return pa.list_(_arrow_type(pa, t.item_type))
    if isinstance(t, mi.StructType):
        return pa.struct([(f.name, _arrow_type(pa, f.type)) for f in t.fields])
    raise TypeError(f"no Parquet type for {t!r}")


def arrow_schema(record_type: type[msgspec.Struct], *, lineage: bool = True) -> Any:
    """The pyarrow schema of a record type (fields in declaration order; without the
    lineage fields when ``lineage`` is false)."""
    pa, _ = _require_pyarrow()
    info = mi.type_info(record_type)
    assert isinstance(info, mi.StructType)
    return pa.schema([
        (f.name, _arrow_type(pa, f.type)) for f in info.fields
        if lineage or f.name not in LINEAGE_FIELDS
    ])


class ParquetSink(FileSink):
    """A directory of Parquet part files (read it whole with ``pyarrow.parquet.read_table``).

    Each part holds up to ``rows_per_part`` records in one row group and is written only
    once complete, so every file in the directory is always valid; memory is bounded by
    one part's records. Records of the part being filled are journaled durably to
    ``_part-NNNNNN.<Type>.jsonl`` (ignored by pyarrow's dataset reader) and a resumed run
    converts that journal into a part. Needs the ``parquet`` extra (pyarrow).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rows_per_part: int = 10_000,
        fsync_interval: float | None = 1.0,
        date: date | str | None = None,
    ):
        self._pa, self._pq = _require_pyarrow()
        super().__init__(path, fsync_interval=fsync_interval, date=date)
        if rows_per_part < 1:
            raise ValueError("rows_per_part must be >= 1")
        self.rows_per_part = rows_per_part
        self._encoder = msgspec.json.Encoder()
        self._buffer: list[Any] = []
        self._type: type[Any] | None = None
        self._journal: Path | None = None
        self._next_part: int | None = None

    def _parts(self) -> list[tuple[int, Path]]:
        if not self.path.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.path.iterdir() if (m := _PART.fullmatch(p.name))
        ]
        return sorted(found)

    def _journals(self) -> list[tuple[int, str, Path]]:
        if not self.path.is_dir():
            return []
        found = [
            (int(m.group(1)), m.group(2), p)
            for p in self.path.iterdir()
            if (m := _JOURNAL.fullmatch(p.name))
        ]
        return sorted(found)

    def _check_kind(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(
                f"{self.path} is a file, and Parquet output is a directory of part files; "
                "choose a new name (or another --format)", path=str(self.path),
            )

    def _check_writable(self, parent: Path) -> None:
        super()._check_writable(parent)
        if self.path.is_dir() and not os.access(self.path, os.W_OK | os.X_OK):
            raise _unwritable(self.path, self.path, None)

    def _has_content(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def _check_owner(self, resume: bool) -> None:
        super()._check_owner(resume)
        if self.state_path.exists() or not self.path.is_dir():
            return
        # Starting over removes only part files and journals: refuse to mix parts into a
        # directory holding anything else (another tool's files, perhaps its own parts).
        ours = (_PART, _JOURNAL)
        foreign = [
            p.name for p in self.path.iterdir() if not any(r.fullmatch(p.name) for r in ours)
        ]
        if foreign or self._parts():
            raise OutputError(
                f"{self.path} holds files a keyapi-async crawl did not write (no "
                f"{self.state_path.name} beside it), e.g. {(foreign or ['part files'])[0]}; "
                "choose a new or empty directory", path=str(self.path),
            )

    def _part_number(self) -> int:
        if self._next_part is None:
            parts = self._parts()
            self._next_part = parts[-1][0] + 1 if parts else 0
        return self._next_part

    def recover(self) -> Iterator[str | None]:
        """Finish what a killed run left (journal -> part) and yield every stored id."""
        if not self.path.is_dir():
            return iter(())
        for stale in self.path.glob("_part-*.parquet.tmp"):
            stale.unlink()
        done = {number for number, _ in self._parts()}
        for number, type_name, journal in self._journals():
            record_type = _RECORD_TYPES.get(type_name)
            if number in done or record_type is None:
                journal.unlink()  # already converted when the run was killed
                continue
            _truncate_torn_lines(journal)
            records = msgspec.json.Decoder(record_type).decode_lines(journal.read_bytes())
            if records:
                self._write_part(number, records, record_type)
            journal.unlink()
        self._next_part = None
        return self._stored_ids()

    def _stored_ids(self) -> Iterator[str | None]:
        for _, part in self._parts():
            table = self._pq.read_table(part, columns=["video_id"])
            yield from table.column("video_id").to_pylist()

    def discard(self) -> None:
        """Remove the parts and journals of a previous run (other files are left alone)."""
        for _, part in self._parts():
            part.unlink()
        for _, _, journal in self._journals():
            journal.unlink()

    def _write_part(self, number: int, records: Sequence[Any], record_type: type[Any]) -> None:
        rows = msgspec.to_builtins(records, builtin_types=(datetime,))
        schema = arrow_schema(record_type, lineage=_has_lineage(records[0]))
        table = self._pa.Table.from_pylist(rows, schema=schema)
        final = self.path / f"part-{number:06d}.parquet"
        temp = self.path / f"_part-{number:06d}.parquet.tmp"
        try:
            self._pq.write_table(table, temp, row_group_size=len(records))
            if self.fsync_interval is not None:
                fd = os.open(temp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)  # a disk filling up: no half part left behind
            raise

    def _flush_part(self) -> None:
        if not self._buffer:
            return
        assert self._type is not None
        self._write_part(self._part_number(), self._buffer, self._type)
        self._next_part = self._part_number() + 1
        self._buffer = []
        # The part is in place: its journal is now redundant (a crash right here leaves
        # both, and recover() drops the journal of any part that exists).
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self._journal is not None:
            self._journal.unlink(missing_ok=True)
            self._journal = None

    async def write(self, records: Sequence[Any]) -> None:
        """Journal the batch (one write) and add it to the part being filled."""
        if not records:
            return
        record_type = type(records[0])
        if self._type is None:
            if record_type.__name__ not in _RECORD_TYPES:
                raise TypeError(f"ParquetSink stores VideoDetail or RankedVideo, not {record_type}")
            self._type = record_type
        elif record_type is not self._type:
            raise TypeError(f"ParquetSink got {record_type.__name__} after {self._type.__name__}")
        if self._journal is None:
            self.path.mkdir(parents=True, exist_ok=True)
            name = f"_part-{self._part_number():06d}.{record_type.__name__}.jsonl"
            self._journal = self.path / name
            self._fd = self._open(self._journal)
        assert self._fd is not None
        write_all(self._fd, self._encoder.encode_lines(records))
        self._maybe_sync(self._fd)
        self._buffer.extend(records)
        self.records_written += len(records)
        if len(self._buffer) >= self.rows_per_part:
            # On a full disk the batch is still stored (journaled): the part is retried
            # by the next write and by close(), which raise if the disk is still full.
            with contextlib.suppress(OSError):
                self._flush_part()

    async def close(self) -> None:
        """Write the last part and remove its journal."""
        self._flush_part()
        await super().close()
