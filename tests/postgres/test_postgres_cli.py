"""The CLI writing to PostgreSQL: ``-o postgresql://... --table T [--snapshot]``."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from keyapi_async.bulk.outputs import describe_output
from keyapi_async.cli import main
from keyapi_async.testing import FakeKeyAPI

PASSWORD = "pw-never-shown-8f3a"


def with_password(dsn: str) -> str:
    """The DSN with a password (trust auth ignores it; the CLI must never print it)."""
    if "@" not in dsn or ":" in dsn.split("//", 1)[1].split("@", 1)[0]:
        pytest.skip("the test DSN has no user or already a password")
    scheme, rest = dsn.split("//", 1)
    user, _, host = rest.partition("@")
    return f"{scheme}//{user}:{PASSWORD}@{host}"


async def _fetch(dsn: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def test_cli_snapshot_into_postgres_resumes_within_the_day(
    postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    dsn = with_password(postgres_dsn)
    fake = FakeKeyAPI()
    ids = fake.make_ids(40)
    known = sum(fake.is_known(i) for i in ids)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids[:20]) + "\n")
    args = ["videos", str(ids_file), "-o", dsn, "--table", table, "--snapshot",
            "--mock", "--qps", "500"]
    try:
        assert main(args) == 0
        ids_file.write_text("\n".join(ids) + "\n")
        assert main(args) == 0
        out = capsys.readouterr()
        assert PASSWORD not in out.out + out.err
        # The second run skipped the 20 done (stored or missing) and asked for the rest.
        assert re.search(r"already done \(resumed\) +20\n", out.out.split("crawl summary")[-1])
        rows = asyncio.run(_fetch(
            postgres_dsn,
            f'SELECT snapshot_date, count(*) AS n, count(fetched_at) AS stamped '
            f'FROM "{table}" GROUP BY 1',
        ))
        today = dt.datetime.now(dt.timezone.utc).date()
        assert [(r["snapshot_date"], r["n"], r["stamped"]) for r in rows] == [
            (today, known, known)
        ]
    finally:
        asyncio.run(_fetch(postgres_dsn, f'DROP TABLE IF EXISTS "{table}", "{table}_missing"'))


def test_cli_database_output_needs_a_table(
    postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("7000000000000000001\n")
    dsn = with_password(postgres_dsn)
    assert main(["videos", str(ids_file), "-o", dsn, "--mock"]) == 2
    err = capsys.readouterr().err
    assert "--table" in err and PASSWORD not in err


def test_describe_output_masks_passwords() -> None:
    assert describe_output("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "secret" not in describe_output("postgres://h/db?password=secret&x=1")
    assert describe_output("videos/{date}.jsonl") == "videos/{date}.jsonl"


def test_cli_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("asyncpg")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("7000000000000000001\n")
    dsn = f"postgresql://crawler:{PASSWORD}@127.0.0.1:1/analytics"  # port 1: refused
    assert main(["videos", str(ids_file), "-o", dsn, "--table", "t", "--mock"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert "error: database output postgresql://crawler:***@127.0.0.1:1/analytics" in err
    assert "Traceback" not in err and PASSWORD not in err + captured.out
