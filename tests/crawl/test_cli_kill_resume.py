"""The CLI killed mid-crawl (SIGINT, SIGKILL) and resumed, checked against the server's log.

The fake server runs as its own process (``python -m keyapi_async.testing``) so its
request log survives the crawler's death. Kill points are driven by observable progress:
the test polls the output until it holds enough records.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyapi_async.testing import FakeKeyAPI

N_IDS = 3000
# Kill points, as records written before the signal: seeded, so a failure reproduces.
KILL_POINTS = [random.Random(seed).randint(1, 2200) for seed in range(3)]


def complete_lines(path: Path) -> list[str]:
    """Ids of the complete JSON lines (a kill -9 may in principle tear the last one)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")[:-1]  # whatever follows the last newline is torn
    return [json.loads(line)["video_id"] for line in lines]


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("kill", [signal.SIGINT, signal.SIGKILL])
def test_killed_crawl_resumes_without_repeats(
    kill: signal.Signals, point: int, spawn_server: Callable[..., Any], tmp_path: Path,
    helpers: Any,
) -> None:
    server = spawn_server("--latency", "0.02", "--jitter", "0.01")
    ids = FakeKeyAPI().make_ids(N_IDS)
    known = {i for i in ids if FakeKeyAPI().is_known(i)}
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "keyapi_async", "videos", str(ids_file), "-o", str(out),
            "--base-url", server.url, "--qps", "250", "--max-concurrency", "8"]

    proc = subprocess.Popen(args, env=helpers.cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        helpers.wait_for(lambda: len(complete_lines(out)) >= point)
        signalled = time.time()
        proc.send_signal(kill)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    data = out.read_bytes()
    if kill == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "stopped early" in stdout and "interrupted" in stdout
        assert data.endswith(b"\n")
        state = json.loads((tmp_path / "out.jsonl.state.json").read_text())
        assert state["status"] == "interrupted" and state["summary"]["not_attempted"] > 0
    else:
        assert proc.returncode == -signal.SIGKILL
    first = complete_lines(out)
    assert len(first) == len(set(first)) and len(first) < len(known)
    missing_log = tmp_path / "out.jsonl.missing.txt"
    first_missing = missing_lines(missing_log)
    first_log = server.requests()
    if kill == signal.SIGINT:
        # Prompt: after Ctrl-C only the batches already in the client's window may start.
        assert sum(r["wall_time"] > signalled for r in first_log) <= 8

    server.reset()
    done = helpers.cli("videos", str(ids_file), "-o", str(out), "--base-url", server.url,
                       "--qps", "250")
    assert done.returncode == 0, done.stderr
    final = helpers.jsonl_ids(out)
    assert len(final) == len(set(final)), "duplicate records after resume"
    assert set(final) == known
    asked = helpers.requested_ids(server.requests())
    assert len(asked) == len(set(asked))
    assert not set(asked) & set(first), "an id already written was requested again"
    assert not set(asked) & set(first_missing), "an id known missing was requested again"
    # Everything is accounted for across both runs: asked now, or written/missing before
    # (an id asked in run 1 whose answer was lost to the kill is simply asked again).
    assert set(asked) | set(first) | set(first_missing) == set(ids)
    assert set(helpers.requested_ids(first_log)) >= set(first)


def missing_lines(path: Path) -> list[str]:
    """The ids of the complete lines of OUT.missing.txt."""
    if not path.exists():
        return []
    return [line.decode() for line in path.read_bytes().split(b"\n")[:-1]]
