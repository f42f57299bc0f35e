"""JSONL files: one JSON object a line, the default output (see :mod:`.base` for durability)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import msgspec

from .base import FileSink, jsonl_ids, truncate_torn_lines

__all__ = ["JsonlSink"]


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
        truncate_torn_lines(self.path)
        return jsonl_ids(self.path)

    async def write(self, records: Sequence[Any]) -> None:
        """Append the batch as JSON lines, one write."""
        if records:
            self._append(self._encoder.encode_lines(records))
            self.records_written += len(records)
