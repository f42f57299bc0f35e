"""Parquet: a directory of closed part files, the part being filled journaled as JSONL.

Parquet files get their footer only when closed, so a killed writer leaves an unreadable
file. :class:`ParquetSink` therefore writes closed part files, and journals the records of
the part being filled to a JSONL file beside it; a resumed run turns a leftover journal into
a part. A kill -9 thus loses no more than with the other sinks. pyarrow (the ``parquet``
extra) is imported when a sink is made, never by importing this module.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from ...pipeline.errors import OutputError
from ...pipeline.models import LINEAGE_FIELDS, RankedVideo, VideoDetail
from .base import (
    FileSink,
    MissingExtraError,
    has_lineage,
    truncate_torn_lines,
    unwritable,
    write_all,
)

__all__ = ["ParquetSink", "arrow_schema"]

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
            raise unwritable(self.path, self.path, None)

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
            truncate_torn_lines(journal)
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
        schema = arrow_schema(record_type, lineage=has_lineage(records[0]))
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
