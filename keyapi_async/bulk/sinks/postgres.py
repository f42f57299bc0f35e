"""A crawl sink that upserts records into a PostgreSQL table (extra ``keyapi-async[postgres]``).

Guarantee: each :meth:`PostgresSink.write` changes the table in one transaction, all of
the batch or none of it. The batch is bulk-loaded with binary ``COPY`` into a staging
table private to the sink's session, then moved into the target by a single statement
(``WITH batch AS (DELETE FROM staging RETURNING ...) INSERT ... ON CONFLICT (key) DO
UPDATE``). A kill, a lost connection or a bad value anywhere in the batch leaves none of
it in the target: a failed COPY rolls back by itself, and a session that dies takes its
staging table with it. Three round trips (COPY takes two) and one commit a batch; the
staging table is emptied by that statement and truncated now and then (``ON COMMIT DELETE
ROWS`` would truncate it at every commit, which costs more than the batch itself).
Because the load is an upsert, repeating a batch is harmless: after a lost connection the
sink reconnects and sends the batch once more, which is safe even when the first commit
did reach the server.

Durability matches the file sinks' default ``fsync_interval=1.0``: with
``synchronous_commit=False`` (the default) a commit does not wait for the server's WAL
flush, so a kill of the crawler loses nothing it wrote, while a crash of the database
server itself may lose the last fraction of a second of batches (three
``wal_writer_delay``, 0.6 s by default), which a resumed crawl then fetches again; never a
part of a batch. ``synchronous_commit=True`` waits for the flush at every batch.

The table is derived from the record type's msgspec fields (see :func:`table_columns`), so
a model change cannot drift from the schema: a new field becomes a new nullable column,
added to an existing table on open. The key is ``video_id``, or ``(snapshot_date,
video_id)`` in snapshot mode, which keeps one row per video and day. ``<table>_missing``
holds the ids the API did not know, with the same keying, and :meth:`resume_ids` reads
both back, so a resumed crawl skips what is stored or known missing for its snapshot.

asyncpg is imported when a sink is created, never by ``import keyapi_async``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi

from ...pipeline.models import LINEAGE_FIELDS, VideoDetail
from .base import MissingExtraError

__all__ = ["Column", "PostgresSink", "table_columns"]

#: The key field every record type stored here must have.
KEY = "video_id"
#: The key column added in snapshot mode.
SNAPSHOT_COLUMN = "snapshot_date"
#: Ids fetched per query while :meth:`PostgresSink.resume_ids` streams (bounded memory).
RESUME_CHUNK = 50_000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,53}")  # leaves room for the "_missing" suffix
_STAGE = "keyapi_stage"  # a temporary table: private to the sink's own connection
#: Rows moved out of the staging table before it is truncated: its dead rows are never
#: vacuumed (temporary tables are not), so it would otherwise grow and slow every batch.
STAGE_TRUNCATE_ROWS = 20_000

_JSON = msgspec.json.Encoder()


@dataclass(frozen=True)
class Column:
    """One column of a sink's table: its name and PostgreSQL type (as ``format_type``
    spells it, so it compares equal to what the catalog reports)."""

    name: str
    sql_type: str


#: Columns stored after the record's own fields, for values that are not fields of the
#: record. Lineage kept per batch rather than on the records would be one line here,
#: ``Column("fetched_at", "timestamp with time zone"), Column("request_id", "text")``, with
#: the batch's two values appended to each row in :meth:`_Layout.rows`. (Lineage kept as
#: record fields needs no change at all: columns follow the fields.)
EXTRA_COLUMNS: tuple[Column, ...] = ()


def _sql_type(t: mi.Type) -> str:
    if isinstance(t, mi.UnionType):
        options = [o for o in t.types if not isinstance(o, mi.NoneType)]
        # Wire-format unions (JSON text | list) hold lists once decoded; ids prefer text.
        lists = [o for o in options if isinstance(o, mi.ListType)]
        strings = [o for o in options if isinstance(o, mi.StrType)]
        return _sql_type((lists or strings or options)[0])
    if isinstance(t, mi.StrType):
        return "text"
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.IntType):
        return "bigint"
    if isinstance(t, mi.FloatType):
        return "double precision"
    if isinstance(t, mi.DateTimeType):
        return "timestamp with time zone"
    if isinstance(t, mi.DateType):
        return "date"
    if isinstance(t, mi.ListType):
        item = _sql_type(t.item_type)
        # Lists of scalars (product ids) are arrays; lists of structs keep their shape.
        return "jsonb" if item == "jsonb" or item.endswith("[]") else item + "[]"
    if isinstance(t, (mi.StructType, mi.DictType)):
        return "jsonb"
    raise TypeError(f"no PostgreSQL type for {t!r}")


def table_columns(
    record_type: type[msgspec.Struct], *, lineage: bool = True
) -> tuple[Column, ...]:
    """The columns of a record type's table: one per msgspec field, in declaration order,
    then :data:`EXTRA_COLUMNS` (strings ``text``, counts ``bigint``, times ``timestamptz``,
    flags ``boolean``, lists of ids ``text[]``, lists of structs ``jsonb``). Without
    ``lineage``, the lineage fields (``fetched_at``, ``request_id``) are left out."""
    info = mi.type_info(record_type)
    if not isinstance(info, mi.StructType):
        raise TypeError(f"PostgresSink stores msgspec Structs, not {record_type!r}")
    columns = tuple(
        Column(f.name, _sql_type(f.type)) for f in info.fields
        if lineage or f.name not in LINEAGE_FIELDS
    )
    if KEY not in {c.name for c in columns}:
        raise TypeError(f"{record_type.__name__} has no {KEY} field to key its rows on")
    return columns + EXTRA_COLUMNS


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _require_asyncpg() -> Any:
    try:
        return importlib.import_module("asyncpg")
    except ImportError:
        raise MissingExtraError(
            "PostgresSink needs asyncpg: pip install 'keyapi-async[postgres]'"
        ) from None


def _scrub(dsn: str) -> str:
    """The DSN without its password (for reprs and messages)."""
    dsn = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", dsn)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", dsn)


def _snapshot_day(snapshot: dt.date | str | None) -> dt.date | None:
    if snapshot is None:
        return None
    if isinstance(snapshot, dt.datetime):
        raise TypeError("snapshot is a day: pass a datetime.date (or 'YYYY-MM-DD'), not a datetime")
    if isinstance(snapshot, dt.date):
        return snapshot
    if isinstance(snapshot, str):
        try:
            return dt.date.fromisoformat(snapshot)
        except ValueError:
            raise ValueError(
                f"snapshot must be a day like '2026-11-21', got {snapshot!r}"
            ) from None
    raise TypeError(
        "snapshot must be a datetime.date, a 'YYYY-MM-DD' string or None, got "
        + type(snapshot).__name__
    )


class _Layout:
    """A record type's table, its missing-ids table and the SQL that uses them."""

    def __init__(
        self, table: str, record_type: type[msgspec.Struct], snapshot: bool, lineage: bool = True
    ) -> None:
        schema, _, name = table.rpartition(".")
        for part in ([schema] if schema else []) + [name]:
            if not _NAME.fullmatch(part):
                raise ValueError(
                    f"table must be NAME or SCHEMA.NAME of letters, digits and _ "
                    f"(at most 54 characters each), got {table!r}"
                )
        prefix = _ident(schema) + "." if schema else ""
        self.table = prefix + _ident(name)
        self.missing_table = prefix + _ident(name + "_missing")
        self.record_type = record_type
        self.columns = table_columns(record_type, lineage=lineage)
        # The record's lineage fields are its last ones (models.py): the columns they feed,
        # or a tail each row drops.
        names = [f.name for f in msgspec.structs.fields(record_type)]
        self._lineage = len(LINEAGE_FIELDS) if names[-2:] == list(LINEAGE_FIELDS) else 0
        self._drop = 0 if lineage else self._lineage
        self.snapshot = snapshot
        # Snapshot first: one day's rows are one range of the key's index (fast resume).
        self.key = (SNAPSHOT_COLUMN, KEY) if snapshot else (KEY,)
        self._key_index = [c.name for c in self.columns].index(KEY)

    def expected(self) -> dict[str, str]:
        """Every column the table must have, name -> type."""
        types = {c.name: c.sql_type for c in self.columns}
        if self.snapshot:
            types[SNAPSHOT_COLUMN] = "date"
        return types

    def create_sql(self) -> str:
        lines = [
            f"{_ident(name)} {sql_type}" + (" NOT NULL" if name in self.key else "")
            for name, sql_type in self.expected().items()
        ]
        lines.append(f"PRIMARY KEY ({', '.join(map(_ident, self.key))})")
        return f"CREATE TABLE IF NOT EXISTS {self.table} (\n  " + ",\n  ".join(lines) + "\n)"

    def create_missing_sql(self) -> str:
        lines = [f"{_ident(KEY)} text NOT NULL"]
        if self.snapshot:
            lines.append(f"{_ident(SNAPSHOT_COLUMN)} date NOT NULL")
        lines.append("recorded_at timestamp with time zone NOT NULL DEFAULT now()")
        lines.append(f"PRIMARY KEY ({', '.join(map(_ident, self.key))})")
        return (
            f"CREATE TABLE IF NOT EXISTS {self.missing_table} (\n  " + ",\n  ".join(lines)
            + "\n)"
        )

    def stage_sql(self) -> str:
        columns = ", ".join(f"{_ident(c.name)} {c.sql_type}" for c in self.columns)
        return f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} ({columns})"

    def upsert_sql(self) -> str:
        """Move the staged batch into the table: one statement, so one transaction."""
        names = [_ident(c.name) for c in self.columns]
        listed = ", ".join(names)
        source = listed + (", $1::date" if self.snapshot else "")
        target = listed + (f", {_ident(SNAPSHOT_COLUMN)}" if self.snapshot else "")
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != _ident(KEY))
        return (
            f"WITH batch AS (DELETE FROM pg_temp.{_STAGE} RETURNING {listed}) "
            f"INSERT INTO {self.table} ({target}) SELECT {source} FROM batch "
            f"ON CONFLICT ({', '.join(map(_ident, self.key))}) DO UPDATE SET {updates}"
        )

    def missing_sql(self) -> str:
        if self.snapshot:
            return (
                f"INSERT INTO {self.missing_table} ({_ident(KEY)}, {_ident(SNAPSHOT_COLUMN)}) "
                "SELECT unnest($1::text[]), $2::date ON CONFLICT DO NOTHING"
            )
        return (
            f"INSERT INTO {self.missing_table} ({_ident(KEY)}) "
            "SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"
        )

    def resume_sql(self, table: str) -> str:
        """Keyset pagination over one table's ids: $1 = last id seen, $2 = limit[, $3 day]."""
        day = f" AND {_ident(SNAPSHOT_COLUMN)} = $3" if self.snapshot else ""
        key = _ident(KEY)
        return f"SELECT {key} FROM {table} WHERE {key} > $1{day} ORDER BY {key} LIMIT $2"

    def rows(self, records: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The batch as COPY rows, one per key (the last record of an id wins)."""
        k = self._key_index
        rows: Iterable[tuple[Any, ...]] = map(msgspec.structs.astuple, records)
        if self._drop:
            cut = -self._drop
            rows = (row[:cut] for row in rows)
        elif self._lineage:
            # Records of a crawl with lineage off: their unset fields become NULL.
            rows = map(_unset_to_null, rows)
        by_key = {row[k]: row for row in rows}
        if None in by_key:
            raise ValueError(f"a record without {KEY} cannot be stored; nothing was written")
        return list(by_key.values())


def _unset_to_null(row: tuple[Any, ...]) -> tuple[Any, ...]:
    if row[-1] is msgspec.UNSET or row[-2] is msgspec.UNSET:
        return row[:-2] + tuple(None if v is msgspec.UNSET else v for v in row[-2:])
    return row


class PostgresSink:
    """Upserts crawled records into a PostgreSQL table, one transaction per batch.

    ``PostgresSink(dsn, table="tiktok_video")`` keeps one row per ``video_id`` with the
    latest values; ``snapshot=date`` (or ``"YYYY-MM-DD"``) keeps one row per video and day
    (key ``(snapshot_date, video_id)``), for daily time series. ``record_type`` is
    :class:`VideoDetail` (default) or :class:`RankedVideo` for ranking crawls.
    ``lineage=False`` makes a table without the ``fetched_at`` and ``request_id`` columns
    (pair it with a crawl's ``lineage=False``; an existing table keeps its columns).

    The table and ``<table>_missing`` are created on first use (or on ``async with``,
    which also checks the connection and an existing table's columns up front). Each
    :meth:`write` is atomic (binary COPY into a staging table, then one upsert); a crawl
    resumes from :meth:`resume_ids`. ``synchronous_commit=False`` (default) does not wait
    for the server's WAL flush (see the module docs: a server crash may lose the last
    fraction of a second, a crawler kill loses nothing). Needs the ``postgres`` extra
    (asyncpg); ``connect_kwargs`` go to ``asyncpg.connect``. The DSN's password is never
    shown.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str,
        record_type: type[msgspec.Struct] = VideoDetail,
        snapshot: dt.date | str | None = None,
        lineage: bool = True,
        synchronous_commit: bool = False,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(dsn, str):
            raise TypeError(
                f"dsn must be a string like 'postgresql://host/db', got {type(dsn).__name__}"
            )
        self.snapshot = _snapshot_day(snapshot)
        self._layout = _Layout(table, record_type, self.snapshot is not None, lineage)
        self.lineage = lineage
        self._asyncpg = _require_asyncpg()
        self._dsn = dsn
        self.table = table
        self.record_type = record_type
        self.synchronous_commit = synchronous_commit
        self.connect_kwargs = dict(connect_kwargs or {})
        self.records_written = 0
        self._conn: Any = None
        self._staged = 0  # rows moved through the current session's staging table
        self._closed = False
        self._lock = asyncio.Lock()  # one connection: one operation at a time
        self._columns = [c.name for c in self._layout.columns]
        self._upsert = self._layout.upsert_sql()
        self._insert_missing = self._layout.missing_sql()
        self._day: tuple[dt.date, ...] = (self.snapshot,) if self.snapshot else ()

    def __repr__(self) -> str:
        snapshot = f", snapshot={self.snapshot.isoformat()!r}" if self.snapshot else ""
        return f"PostgresSink({_scrub(self._dsn)!r}, table={self.table!r}{snapshot})"

    # -- connection and tables -----------------------------------------------------

    async def open(self) -> None:
        """Connect, create the tables if missing and check an existing table's columns."""
        async with self._lock:
            await self._connection()

    async def _connection(self) -> Any:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
            self._staged = 0
        return self._conn

    def _drop_connection(self) -> None:
        """Abandon the session (and with it the staging table and anything in it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _connect(self) -> Any:
        conn = await self._asyncpg.connect(self._dsn, **self.connect_kwargs)
        try:
            # jsonb in binary form is a version byte and the JSON text; msgspec encodes the
            # records' structs (product categories) directly.
            await conn.set_type_codec(
                "jsonb", schema="pg_catalog", format="binary",
                encoder=lambda value: b"\x01" + _JSON.encode(value),
                decoder=lambda data: msgspec.json.decode(data[1:]),
            )
            if not self.synchronous_commit:
                await conn.execute("SET synchronous_commit = off")
            async with conn.transaction():
                await self._prepare_tables(conn)
            await conn.execute(self._layout.stage_sql())
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _prepare_tables(self, conn: Any) -> None:
        layout = self._layout
        # Serializes concurrent first runs: CREATE TABLE IF NOT EXISTS can race otherwise.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "keyapi:" + layout.table)
        for table, create in (
            (layout.table, layout.create_sql()),
            (layout.missing_table, layout.create_missing_sql()),
        ):
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                await conn.execute(create)
        await self._check_columns(conn)

    async def _check_columns(self, conn: Any) -> None:
        layout = self._layout
        rows = await conn.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
            layout.table,
        )
        found = {name: sql_type for name, sql_type in rows}
        if (SNAPSHOT_COLUMN in found) != layout.snapshot:
            hint = "pass snapshot=" if SNAPSHOT_COLUMN in found else "drop snapshot="
            made = "in" if SNAPSHOT_COLUMN in found else "without"
            raise ValueError(
                f"table {self.table} was made {made} snapshot mode; {hint} or use another table"
            )
        expected = layout.expected()
        wrong = [
            f"{name} is {found[name]}, expected {sql_type}"
            for name, sql_type in expected.items()
            if name in found and found[name] != sql_type
        ]
        if wrong:
            raise ValueError(
                f"table {self.table} does not fit {self.record_type.__name__} records: "
                + "; ".join(wrong) + "; use another table"
            )
        keys = await conn.fetch(
            "SELECT array(SELECT a.attname FROM unnest(i.indkey) AS k "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k) "
            "FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indisunique "
            "AND i.indpred IS NULL",
            layout.table,
        )
        if not any(set(row[0]) == set(layout.key) for row in keys):
            raise ValueError(
                f"table {self.table} has no unique key on ({', '.join(layout.key)}) to "
                "upsert on; use another table"
            )
        # A field added to the model since the table was made: a new nullable column.
        for name, sql_type in expected.items():
            if name not in found:
                await conn.execute(
                    f"ALTER TABLE {layout.table} ADD COLUMN IF NOT EXISTS {_ident(name)} "
                    + sql_type
                )

    # -- the sink protocol ---------------------------------------------------------

    async def write(self, records: Sequence[Any]) -> None:
        """Upsert one batch: all of it or none of it (the last record of an id wins)."""
        if not records:
            return
        if type(records[0]) is not self.record_type:
            raise TypeError(
                f"PostgresSink(table={self.table!r}) stores {self.record_type.__name__}, got "
                f"{type(records[0]).__name__} (pass record_type=)"
            )
        rows = self._layout.rows(records)

        async def load(conn: Any) -> None:
            if self._staged >= STAGE_TRUNCATE_ROWS:
                await conn.execute(f"TRUNCATE pg_temp.{_STAGE}")
                self._staged = 0
            # A COPY that fails rolls back by itself: nothing of it stays staged.
            await conn.copy_records_to_table(
                _STAGE, schema_name="pg_temp", records=rows, columns=self._columns
            )
            try:
                await conn.execute(self._upsert, *self._day)
            except BaseException:
                # The rows are still staged; the next batch must not move them.
                self._drop_connection()
                raise
            self._staged += len(rows)

        await self._run(load)
        self.records_written += len(rows)

    async def write_missing(self, ids: Sequence[str]) -> None:
        """Record ids the API did not know (one statement, so atomic too)."""
        if not ids:
            return
        values = list(ids)

        async def insert(conn: Any) -> None:
            await conn.execute(self._insert_missing, values, *self._day)

        await self._run(insert)

    async def resume_ids(self) -> AsyncIterator[str]:
        """Yield every id stored or recorded missing (for this snapshot), in chunks of
        :data:`RESUME_CHUNK` (memory stays bounded; no transaction is held between them)."""
        layout = self._layout
        for table in (layout.table, layout.missing_table):
            sql = layout.resume_sql(table)
            last = ""
            while True:
                async with self._lock:
                    conn = await self._connection()
                    rows = await conn.fetch(sql, last, RESUME_CHUNK, *self._day)
                for (vid,) in rows:
                    yield vid
                if len(rows) < RESUME_CHUNK:
                    break
                last = rows[-1][0]

    async def _run(self, step: Callable[[Any], Awaitable[None]]) -> None:
        """Run ``step(conn)``; after a lost connection, reconnect and run it once more
        (every step is idempotent: an upsert, or an insert that ignores conflicts)."""
        async with self._lock:
            try:
                await step(await self._connection())
                return
            except self._lost_connection_errors():
                self._drop_connection()
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    # Cancelled in the middle of a call: the session's state is unknown.
                    self._drop_connection()
                raise
            await step(await self._connection())

    def _lost_connection_errors(self) -> tuple[type[BaseException], ...]:
        exceptions = self._asyncpg.exceptions
        return (
            OSError,
            exceptions.PostgresConnectionError,  # SQLSTATE class 08, "connection exception"
            exceptions.AdminShutdownError,  # pg_terminate_backend, server shutting down
            exceptions.CrashShutdownError,
            # A FATAL notice that arrived while idle leaves asyncpg waiting for a
            # ReadyForQuery that never comes; the next call then fails with this, before
            # the closed socket is noticed.
            exceptions.InternalClientError,
        )

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=10)
            except BaseException:
                conn.terminate()
                raise

    async def __aenter__(self) -> PostgresSink:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
