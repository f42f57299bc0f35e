"""CSV files: a header, one column per field (see :mod:`.base` for durability)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import msgspec

from ...pipeline.models import LINEAGE_FIELDS
from .base import FileSink, has_lineage

__all__ = ["CsvSink"]


def _columns(record: Any) -> list[str]:
    """The columns of a batch starting with ``record``: every field, but the lineage
    fields only when the crawl set them (a crawl sets them on all records or none)."""
    names = [f.name for f in msgspec.structs.fields(type(record))]
    if not has_lineage(record):
        names = [n for n in names if n not in LINEAGE_FIELDS]
    return names


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
