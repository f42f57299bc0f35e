"""A crawl's output: locked for the crawl's life, checked before the first request.

Issue 12, points 1 and 3. Two crawls on one output (two processes, or two tasks of one)
must never both write it: the second is refused at once with ``OutputLockedError`` (CLI
exit 2) before any request, and a crawl killed with SIGKILL leaves no stale lock. An
output that cannot be used (a missing or read-only directory, a directory where a file
belongs, a file a crawl did not write) is refused before any credit is spent, with a
one-line message and exit 2. Every test reads the fake server's own request log.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from crawl_helpers import cli_env, jsonl_ids, requested_ids, wait_for
from server_process import ServerProcess
from tmpfs import tmpfs

import keyapi_async as ka
from keyapi_async.cli import main
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

KEY = "test-key"
FAST = ka.RetryPolicy(base_delay=0.001, max_delay=0.01)
RANKING = {"date": "2024-05-06", "region": "US", "video_rank_field": 1, "rank_type": 1}


def make_client(server: FakeKeyAPI, **kwargs: Any) -> ka.KeyAPIClient:
    kwargs.setdefault("qps", 2000)
    return ka.KeyAPIClient(KEY, base_url=server.url, retry_policy=FAST, **kwargs)


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    with ServerProcess("--latency", "0.01") as server:
        yield server


# -- point 1: the lock ----------------------------------------------------------------


async def _held_ids(ids: list[str], after: int, release: asyncio.Event) -> AsyncIterator[str]:
    """``ids``, pausing after the first ``after`` until ``release``: a crawl kept running.

    (The client pulls ids until its in-flight window is full before it hands back a
    result, so the tests use ``max_concurrency=2``: results come back before the pause.)
    """
    for position, vid in enumerate(ids):
        if position == after:
            await release.wait()
        yield vid


async def test_second_crawl_in_the_same_process_refused_before_any_request(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    async with FakeKeyAPI() as server:
        ids = server.make_ids(400)
        first_ids, second_ids = ids[:200], ids[200:]
        running, release = asyncio.Event(), asyncio.Event()
        async with make_client(server, max_concurrency=2) as client:
            first = asyncio.create_task(ka.crawl_video_details(
                client, _held_ids(first_ids, 50, release), ka.JsonlSink(out),
                on_progress=lambda report: running.set(),
            ))
            await running.wait()  # the first crawl has stored a batch and holds the output
            with pytest.raises(ka.OutputLockedError, match="another crawl") as caught:
                await ka.crawl_video_details(client, second_ids, ka.JsonlSink(out))
            assert caught.value.path == str(out) and caught.value.fatal
            assert not set(requested_ids(server.requests)) & set(second_ids)
            # Another crawl on a different output is not affected.
            other = await ka.crawl_video_details(client, second_ids[:20], ka.JsonlSink(
                tmp_path / "other.jsonl"))
            assert other.ok
            release.set()
            report = await first
        assert report.ok and report.requested == 200
        assert sorted(jsonl_ids(out)) == sorted(i for i in first_ids if server.is_known(i))
        assert not (tmp_path / "out.jsonl.lock").exists()  # released and removed
        # Released: the same output now takes the second crawl (resuming, as one would).
        async with make_client(server) as client:
            again = await ka.crawl_video_details(client, second_ids, ka.JsonlSink(out))
        assert again.ok and again.fetched + again.missing == 200


async def test_one_sink_object_in_two_concurrent_crawls_refused(tmp_path: Path) -> None:
    class Memory:
        def __init__(self) -> None:
            self.records: list[Any] = []

        async def write(self, records: Any) -> None:
            self.records.extend(records)

        async def close(self) -> None:
            pass

    async with FakeKeyAPI() as server:
        ids = server.make_ids(100)
        for sink in (ka.JsonlSink(tmp_path / "a.jsonl"), Memory()):
            running, release = asyncio.Event(), asyncio.Event()
            async with make_client(server, max_concurrency=2) as client:
                first = asyncio.create_task(ka.crawl_video_details(
                    client, _held_ids(ids, 20, release), sink,
                    on_progress=lambda report, running=running: running.set(),
                ))
                await running.wait()
                before = len(server.requests)
                with pytest.raises(ka.OutputLockedError, match="already used by a running"):
                    await ka.crawl_video_details(client, ids[50:], sink)
                assert len(server.requests) == before
                release.set()
                assert (await first).ok


def test_two_spellings_of_one_output_share_the_lock(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    holder = ka.JsonlSink(tmp_path / "real" / "out.jsonl")
    holder.acquire()
    try:
        for spelling in ("link/out.jsonl", "real/../real/out.jsonl"):
            with pytest.raises(ka.OutputLockedError):
                ka.JsonlSink(tmp_path / spelling).acquire()
    finally:
        holder.release()
    again = ka.JsonlSink(tmp_path / "link" / "out.jsonl")
    again.acquire()  # free again
    again.release()


async def test_ranking_crawl_refused_while_the_output_is_held(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    holder = ka.JsonlSink(out)
    holder.acquire()  # as a crawl in progress does
    async with FakeKeyAPI() as server, make_client(server) as client:
        with pytest.raises(ka.OutputLockedError):
            await ka.crawl_video_ranking(client, ka.JsonlSink(out), max_pages=2, **RANKING)
        assert server.requests == []
        holder.release()
        report = await ka.crawl_video_ranking(client, ka.JsonlSink(out), max_pages=2, **RANKING)
    assert report.pages == 2 and len(jsonl_ids(out)) == 20


def test_second_cli_crawl_refused_at_once_and_a_killed_holder_leaves_no_stale_lock(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    ids = FakeKeyAPI().make_ids(1000)
    shard_a, shard_b = tmp_path / "a.txt", tmp_path / "b.txt"
    shard_a.write_text("\n".join(ids[:800]) + "\n")  # two shards given the same -o
    shard_b.write_text("\n".join(ids[800:]) + "\n")
    out = tmp_path / "out.jsonl"
    base = [sys.executable, "-m", "keyapi_async", "videos", "-o", str(out),
            "--base-url", server_process.url]
    holder = subprocess.Popen([*base[:4], str(shard_a), *base[4:], "--qps", "5"],
                              env=cli_env(KEY), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0)
        second = subprocess.run([*base[:4], str(shard_b), *base[4:]], env=cli_env(KEY),
                                capture_output=True, text=True, timeout=60)
        assert holder.poll() is None, "the first crawl was still running"
        assert second.returncode == 2
        assert "being written by another crawl" in second.stderr
        assert "Traceback" not in second.stderr and second.stdout == ""
        assert not set(requested_ids(server_process.requests())) & set(ids[800:])
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()
    assert (tmp_path / "out.jsonl.lock").exists()  # left by kill -9, but locks nothing
    complete = out.read_bytes().rsplit(b"\n", 1)[0]  # a kill may in principle tear a line
    stored = {json.loads(line)["video_id"] for line in complete.splitlines()}
    again = subprocess.run([*base[:4], str(shard_b), *base[4:]], env=cli_env(KEY),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "out.jsonl.lock").exists()
    final = jsonl_ids(out)
    assert len(final) == len(set(final))  # no id twice
    assert set(final) == stored | {i for i in ids[800:] if FakeKeyAPI().is_known(i)}


# -- point 3: the output is checked before the first request -------------------------


def _parquet_file(path: Path) -> None:
    pq.write_table(pa.table({"video_id": ["1", "2"]}), path)


def _foreign_jsonl(path: Path) -> None:
    path.write_text('{"video_id": "7117191641181555995", "note": "my own data"}\n')


def _foreign_parquet_dir(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("someone else's directory\n")


OUTPUT_CASES = {
    # name: (prepare(tmp_path) -> -o value, extra args, message)
    "existing Parquet file, not a crawl's": (
        lambda t: (_parquet_file(t / "x.parquet"), t / "x.parquet")[1], [],
        "is a file, and Parquet output is a directory",
    ),
    "JSONL file a crawl did not write": (
        lambda t: (_foreign_jsonl(t / "x.jsonl"), t / "x.jsonl")[1], [],
        "exists but was not written by a keyapi-async crawl",
    ),
    "Parquet directory with other files": (
        lambda t: (_foreign_parquet_dir(t / "d.parquet"), t / "d.parquet")[1], ["--no-resume"],
        "holds files a keyapi-async crawl did not write",
    ),
    "missing parent directory": (
        lambda t: t / "nope" / "deeper" / "out.jsonl", [], "nope/deeper does not exist",
    ),
    "parent is a file": (
        lambda t: ((t / "f").write_text("x"), t / "f" / "out.jsonl")[1], [],
        "is not a directory",
    ),
    "-o names a directory": (lambda t: t, [], "is a directory; name the output file"),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
@pytest.mark.parametrize("command", ["videos", "ranking"])
def test_unusable_output_refused_before_any_request(
    case: str, command: str, server_process: ServerProcess, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    prepare, extra, message = OUTPUT_CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    output = prepare(work)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(FakeKeyAPI().make_ids(30)) + "\n")
    monkeypatch.setenv("KEYAPI_API_KEY", KEY)
    args = (
        ["videos", str(ids)] if command == "videos"
        else ["ranking", "--date", "2024-05-06", "--region", "US", "--rank-field", "views",
              "--rank-type", "day", "--max-pages", "2"]
    )
    before = sorted(p.name for p in work.rglob("*"))
    code = main([*args, "-o", str(output), "--base-url", server_process.url, *extra])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert server_process.requests() == []
    assert sorted(p.name for p in work.rglob("*")) == before  # nothing created or removed


def test_foreign_file_overwritten_only_with_no_resume(
    server_process: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "x.jsonl"
    _foreign_jsonl(out)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(FakeKeyAPI().make_ids(30)) + "\n")
    monkeypatch.setenv("KEYAPI_API_KEY", KEY)
    args = ["videos", str(ids), "-o", str(out), "--base-url", server_process.url]
    assert main(args) == 2
    assert main([*args, "--no-resume"]) == 0
    assert "my own data" not in out.read_text()
    assert main(args) == 0  # now the crawl's own output: a resume, no request
    assert len(requested_ids(server_process.requests())) == 30


def test_read_only_directory_refused_before_any_request(
    server_process: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(FakeKeyAPI().make_ids(30)) + "\n")
    monkeypatch.setenv("KEYAPI_API_KEY", KEY)
    # Root ignores permission bits, so the read-only directory is a read-only mount.
    with tmpfs(tmp_path / "ro", 64) as fs:
        (fs.path / "old.jsonl.lock").write_text("")  # a killed run's lock file: no help
        fs.remount("ro")
        for name in ("new.jsonl", "old.jsonl"):
            code = main(["videos", str(ids), "-o", str(fs.path / name),
                         "--base-url", server_process.url])
            err = capsys.readouterr().err
            assert code == 2, err
            assert f"cannot write {fs.path / name}" in err and err.count("\n") == 1
    assert server_process.requests() == []


def test_a_lock_object_forgotten_without_release_frees_the_lock(tmp_path: Path) -> None:
    import gc

    from keyapi_async.bulk.filelock import FileLock, LockHeld

    path = tmp_path / "out.lock"
    first = FileLock(path)
    first.acquire()
    with pytest.raises(LockHeld):
        FileLock(path).acquire()
    del first
    gc.collect()
    second = FileLock(path)
    second.acquire()  # the file was closed with the object: the kernel dropped the lock
    second.release()
    assert not path.exists()
