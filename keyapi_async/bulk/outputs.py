"""Pick a crawl's sink from an output spec: a file path (JSONL, CSV, Parquet) or a
PostgreSQL DSN (``postgresql://...``), with ``{date}`` partitions.

``open_output("videos/{date}.parquet")`` is a :class:`~keyapi_async.ParquetSink` writing
``videos/2026-11-21.parquet`` (the UTC day, or ``day``); ``open_output("postgresql://h/db",
table="videos", snapshot=True)`` a :class:`~keyapi_async.PostgresSink` keyed by that day.
:func:`describe_output` names an output for people: a DSN without its password.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Any

from ..pipeline.models import VideoDetail
from .sinks.base import FileSink, Sink, expand_date
from .sinks.csv import CsvSink
from .sinks.jsonl import JsonlSink
from .sinks.parquet import ParquetSink

__all__ = ["FORMATS", "describe_output", "is_database", "open_output"]

#: The file formats, by name.
FORMATS: dict[str, type[FileSink]] = {"jsonl": JsonlSink, "csv": CsvSink, "parquet": ParquetSink}

_DSN = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
_PASSWORD = re.compile(r"^(postgres(?:ql)?://[^:/@]*):[^@]*@", re.IGNORECASE)


def is_database(spec: str) -> bool:
    """Whether ``spec`` is a PostgreSQL DSN rather than a file path."""
    return bool(_DSN.match(spec))


def describe_output(spec: str) -> str:
    """``spec`` fit to print: a DSN's password (and ``password=`` parameter) masked."""
    text = _PASSWORD.sub(r"\1:***@", spec)
    return re.sub(r"(password=)[^&]*", r"\1***", text, flags=re.IGNORECASE)


def open_output(
    spec: str | os.PathLike[str],
    *,
    format: str | None = None,
    day: dt.date | str | None = None,
    table: str | None = None,
    snapshot: bool = False,
    record_type: type[Any] = VideoDetail,
    lineage: bool = True,
) -> Sink:
    """The sink for ``spec``. A file path's ``{date}`` becomes ``day`` (default: today's
    UTC day) and its format is ``format`` or follows the extension (``.csv``,
    ``.parquet``, else JSONL). A ``postgresql://`` DSN needs ``table``; ``snapshot`` keys
    its rows by ``day`` (one row per video and day). ``lineage`` only shapes a new table:
    the crawl's own ``lineage`` decides what records carry."""
    text = os.fspath(spec)
    if is_database(text):
        if not table:
            raise ValueError(
                f"a database output needs a table: add --table NAME ({describe_output(text)})"
            )
        if format is not None:
            raise ValueError("--format is for files; a database output has no format")
        from .sinks.postgres import PostgresSink

        snap = (day or dt.datetime.now(dt.timezone.utc).date()) if snapshot else None
        return PostgresSink(
            text, table=table, record_type=record_type, snapshot=snap, lineage=lineage
        )
    if table is not None or snapshot:
        raise ValueError("--table and --snapshot are for a postgresql:// output")
    path = expand_date(text, day)
    name = format
    if name is None:
        name = {".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "jsonl")
    return FORMATS[name](path)
