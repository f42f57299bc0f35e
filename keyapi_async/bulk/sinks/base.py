"""Where crawled records go: the :class:`Sink` protocol (any object with async
``write(records)`` and ``close()``), and what the built-in file sinks share (``jsonl``,
``csv``, ``parquet``; ``postgres`` writes a table).

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

Parquet files get their footer only when closed: ``parquet`` explains how its sink keeps
the same promise.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from ...pipeline.errors import OutputError, OutputLockedError, OutputWriteError
from ...pipeline.models import LINEAGE_FIELDS
from ..filelock import FileLock, LockHeld

__all__ = [
    "DATE_FIELD",
    "FileSink",
    "MissingExtraError",
    "Sink",
    "expand_date",
    "has_lineage",
    "jsonl_ids",
    "output_write_error",
    "truncate_torn_lines",
    "unwritable",
    "write_all",
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
            raise unwritable(self.path, parent, exc) from None
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
            raise unwritable(self.path, parent, None)
        if self.path.is_file():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
            except OSError as exc:
                raise unwritable(self.path, self.path, exc) from None

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


def unwritable(path: Path, where: Path, exc: OSError | None) -> OutputError:
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


def truncate_torn_lines(path: Path) -> int:
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


def jsonl_ids(path: Path) -> Iterator[str | None]:
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


def has_lineage(record: Any) -> bool:
    """Whether a crawl set the lineage fields of ``record`` (it sets all records or none)."""
    return getattr(record, LINEAGE_FIELDS[0], msgspec.UNSET) is not msgspec.UNSET


