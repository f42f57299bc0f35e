"""PostgresSink without a server: the schema derived from the models, argument checks,
the lazy import of asyncpg, and the DSN's password kept out of sight."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import typing

import msgspec
import pytest

import keyapi_async as ka
from keyapi_async.bulk.sinks.base import MissingExtraError
from keyapi_async.bulk.sinks.postgres import KEY, Column, table_columns

#: What each scalar annotation must become (independent of the module's own mapping).
SCALARS = {str: "text", int: "bigint", bool: "boolean", dt.datetime: "timestamp with time zone"}
#: The two list fields of RankedVideo: product ids stay text, categories keep their shape.
LISTS = {"video_products": "text[]", "product_category_list": "jsonb"}


@pytest.mark.parametrize("record_type", [ka.VideoDetail, ka.RankedVideo])
def test_every_field_gets_a_typed_column(record_type: type[msgspec.Struct]) -> None:
    hints = typing.get_type_hints(record_type)
    columns = table_columns(record_type)
    assert [c.name for c in columns] == [f.name for f in msgspec.structs.fields(record_type)]
    for column in columns:
        if column.name in LISTS:
            assert column.sql_type == LISTS[column.name]
            continue
        [scalar] = [
            t for t in (typing.get_args(hints[column.name]) or (hints[column.name],))
            if t not in (type(None), msgspec.UnsetType)
        ]
        assert column.sql_type == SCALARS[scalar], column


def test_a_new_model_field_becomes_a_column() -> None:
    class Extended(ka.VideoDetail, gc=False):
        fetched_at: dt.datetime | None = None
        request_id: str | None = None
        tags: list[str] | None = None
        score: float | None = None

    assert table_columns(Extended)[-4:] == (
        Column("fetched_at", "timestamp with time zone"), Column("request_id", "text"),
        Column("tags", "text[]"), Column("score", "double precision"),
    )


def test_a_type_without_video_id_is_refused() -> None:
    class NoKey(msgspec.Struct):
        name: str | None = None

    with pytest.raises(TypeError, match=KEY):
        table_columns(NoKey)
    with pytest.raises(TypeError, match="msgspec Structs"):
        table_columns(dict)  # type: ignore[arg-type]


def test_import_keyapi_async_does_not_import_asyncpg() -> None:
    code = (
        "import sys, keyapi_async as ka; "
        "assert 'asyncpg' not in sys.modules; "
        "assert 'keyapi_async.bulk.sinks.postgres' not in sys.modules; "
        "ka.PostgresSink; assert 'asyncpg' not in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_without_asyncpg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # makes `import asyncpg` fail
    with pytest.raises(MissingExtraError, match=r"keyapi-async\[postgres\]"):
        ka.PostgresSink("postgresql://localhost/db", table="videos")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"table": "videos; DROP TABLE x"}, ValueError, "letters, digits"),
        ({"table": ""}, ValueError, "letters, digits"),
        ({"table": "a.b.c"}, ValueError, "letters, digits"),
        ({"table": "x" * 55}, ValueError, "54 characters"),
        ({"table": "v", "snapshot": dt.datetime(2026, 11, 21)}, TypeError, "not a datetime"),
        ({"table": "v", "snapshot": "21/11/2026"}, ValueError, "a day like"),
        ({"table": "v", "snapshot": 20261121}, TypeError, "datetime.date"),
        ({"table": "v", "record_type": dict}, TypeError, "msgspec Structs"),
    ],
)
def test_bad_arguments_fail_before_connecting(
    kwargs: dict[str, typing.Any], error: type[Exception], match: str
) -> None:
    pytest.importorskip("asyncpg")
    with pytest.raises(error, match=match):
        ka.PostgresSink("postgresql://127.0.0.1:1/nothing", **kwargs)


def test_snapshot_accepts_a_date_or_iso_text() -> None:
    pytest.importorskip("asyncpg")
    day = dt.date(2026, 11, 21)
    assert ka.PostgresSink("postgresql:///db", table="v", snapshot=day).snapshot == day
    assert ka.PostgresSink("postgresql:///db", table="v", snapshot="2026-11-21").snapshot == day
    assert ka.PostgresSink("postgresql:///db", table="s.v").snapshot is None


def test_repr_hides_the_password() -> None:
    pytest.importorskip("asyncpg")
    for dsn in ("postgresql://crawler:hunter2secret@db.example:5432/analytics",
                "postgresql://db.example/analytics?user=crawler&password=hunter2secret"):
        shown = repr(ka.PostgresSink(dsn, table="videos"))
        assert "hunter2secret" not in shown and "db.example" in shown and "***" in shown


@pytest.mark.parametrize("dsn", [
    "postgresql://crawler:hunter2secret@127.0.0.1:1/analytics",  # nothing listens on port 1
    "postgresql://crawler:hunter2secret@127.0.0.1:notaport/analytics",
    "http://crawler:hunter2secret@127.0.0.1/analytics",
])
async def test_connection_errors_do_not_carry_the_password(dsn: str) -> None:
    pytest.importorskip("asyncpg")
    import traceback

    with pytest.raises(Exception) as failed:  # asyncpg's error varies by case
        await ka.PostgresSink(dsn, table="videos").open()
    assert "hunter2secret" not in "".join(traceback.format_exception(failed.value))
