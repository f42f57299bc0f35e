"""A real PostgreSQL server for the PostgresSink tests, and a fresh table name per test.

Uses ``KEYAPI_TEST_POSTGRES_DSN`` when set (``.ci/postgres.sh start`` prints it);
otherwise starts a throwaway cluster with that same script on a free 127.0.0.1 port if
Debian's server binaries are installed; otherwise the tests that need a server skip,
saying why. No ``__init__.py`` here on purpose, like tests/redis.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "postgres.sh"
NO_POSTGRES = (
    "no PostgreSQL for the PostgresSink tests: KEYAPI_TEST_POSTGRES_DSN is unset and no "
    "server binaries were found (run .ci/postgres.sh start, or apt-get install postgresql)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _have_server() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or bool(shutil.which("initdb"))


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a running PostgreSQL (shared by the session; tests use unique tables)."""
    pytest.importorskip("asyncpg", reason="asyncpg not installed: pip install "
                        "'keyapi-async[postgres]'")
    dsn = os.environ.get("KEYAPI_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    if not _have_server():
        pytest.skip(NO_POSTGRES)
    # Directly under /tmp: the server runs as the postgres user, which cannot enter
    # pytest's root-owned 0700 temp directories.
    directory = tempfile.mkdtemp(prefix="keyapi-async-pg-test-")
    env = {**os.environ, "PG_PORT": str(_free_port()), "PG_DIR": directory}
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        if started.returncode != 0:
            pytest.fail(f".ci/postgres.sh start failed:\n{started.stderr}")
        line = started.stdout.strip().splitlines()[-1]
        yield line.partition("=")[2]
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def db(postgres_dsn: str) -> AsyncIterator[Any]:
    """An asyncpg connection of the test's own, to look at what the sink stored."""
    import asyncpg

    conn = await asyncpg.connect(postgres_dsn)
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=str, decoder=json.loads
    )
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def table(db: Any) -> AsyncIterator[str]:
    """A table name no other test uses (dropped afterwards with its missing-ids table)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    await db.execute(f'DROP TABLE IF EXISTS "{name}", "{name}_missing"')
