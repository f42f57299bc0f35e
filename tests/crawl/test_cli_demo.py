"""`keyapi-async demo`: offline without a key, a small real crawl with one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def test_with_a_key_the_demo_crawls_the_configured_api_within_six_credits(
    spawn_server: Callable[..., Any], tmp_path: Path, helpers: Any
) -> None:
    server = spawn_server()  # stands in for the real API
    env = helpers.cli_env(key="test-key")
    env["KEYAPI_BASE_URL"] = server.url
    done = helpers.cli("demo", "--out-dir", str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr
    assert "spends at most 6 credits" in done.stderr
    log = server.requests()
    assert len(log) == 6  # 3 ranking pages, then 3 detail requests of 10 ids
    ranked = [
        json.loads(x)["video_id"] for x in (tmp_path / "ranking.jsonl").read_text().splitlines()
    ]
    assert len(ranked) == 30
    assert sorted(helpers.requested_ids(log)) == sorted(ranked)
    assert (tmp_path / "demo.jsonl").exists()


def test_without_a_key_or_with_mock_the_demo_stays_offline(tmp_path: Path, helpers: Any) -> None:
    env = helpers.cli_env(key="")
    env.pop("KEYAPI_API_KEY")
    done = helpers.cli("demo", "--ids", "200", "--out-dir", str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr
    assert "from a fake KeyAPI" in done.stderr
    lines = (tmp_path / "demo.jsonl").read_text().splitlines()
    assert 150 <= len(lines) <= 200  # known ids of 200; the fake server omits some
    with_key = helpers.cli(
        "demo",
        "--mock",
        "--ids",
        "50",
        "--out-dir",
        str(tmp_path / "m"),
        env=helpers.cli_env(key="sk-real-looking"),
    )
    assert with_key.returncode == 0 and "from a fake KeyAPI" in with_key.stderr
