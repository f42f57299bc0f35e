"""A disk filling up mid-crawl (issue 12, point 4), on a real file system: a small tmpfs.

A full disk stops the crawl at once with ``OutputWriteError`` (CLI: one line naming the
file and the file system, the summary, exit 3). What is stored stays consistent: no torn
record, the state file gets its final status (never left "running") and no
``state.json.tmp`` is left; the ids of the batch that could not be written are counted
failed. After space is freed, the same crawl resumes: every id ends stored exactly once,
and no id already stored or recorded missing is asked for again.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from crawl_helpers import requested_ids
from server_process import ServerProcess
from tmpfs import tmpfs

import keyapi_async as ka
from keyapi_async.bulk.sinks.base import write_all
from keyapi_async.bulk.state import CrawlState, load_state, save_state
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

KEY = "test-key"
FAST = ka.RetryPolicy(base_delay=0.001, max_delay=0.01)
RANKING = {"date": "2024-05-06", "region": "US", "video_rank_field": 1, "rank_type": 1}
#: A record is ~840 bytes of JSON: 160 KiB holds a dozen batches, then the disk is full.
DISK_KIB = 160


def stored_ids(out: Path) -> list[str]:
    """The ids in an output, read without changing it (a full disk allows no repair);
    asserts that no record is torn."""
    if out.suffix == ".parquet":
        ids: list[str] = []
        for part in sorted(out.glob("part-*.parquet")):
            ids += pq.read_table(part, columns=["video_id"]).column("video_id").to_pylist()
        for journal in sorted(out.glob("_part-*.jsonl")):
            data = journal.read_bytes()
            assert data == b"" or data.endswith(b"\n"), "torn journal line"
            ids += [json.loads(line)["video_id"] for line in data.splitlines()]
        return ids
    if not out.exists():
        return []
    data = out.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "torn last record"
    if out.suffix == ".csv":
        return [row["video_id"] for row in csv.DictReader(io.StringIO(data.decode()))]
    return [json.loads(line)["video_id"] for line in data.splitlines()]


def missing_ids(out: Path) -> list[str]:
    path = out.with_name(out.name + ".missing.txt")
    return path.read_text().split() if path.exists() else []


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*.tmp"))


SINKS: dict[str, Callable[[Path], ka.Sink]] = {
    "jsonl": lambda d: ka.JsonlSink(d / "out.jsonl"),
    "csv": lambda d: ka.CsvSink(d / "out.csv"),
    # Small parts: the disk fills up while writing a part as well as a journal.
    "parquet": lambda d: ka.ParquetSink(d / "out.parquet", rows_per_part=30),
}


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Any]:
    with tmpfs(tmp_path / "disk", DISK_KIB) as fs:
        yield fs


@pytest.mark.parametrize("fmt", list(SINKS))
async def test_disk_full_stops_cleanly_and_resumes_losslessly(fmt: str, disk: Any) -> None:
    make_sink = SINKS[fmt]
    out: Path = make_sink(disk.path).path  # type: ignore[attr-defined]
    async with FakeKeyAPI() as server:
        ids = server.make_ids(1500)
        known = {i for i in ids if server.is_known(i)}
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=2000,
                                   retry_policy=FAST) as client:
            with pytest.raises(ka.OutputWriteError) as caught:
                await ka.crawl_video_details(client, ids, make_sink(disk.path))
        err = caught.value
        report: ka.CrawlReport = err.report  # type: ignore[attr-defined]
        # One line naming the file and the full file system; the cause kept for code.
        assert err.errno == errno.ENOSPC and "\n" not in str(err)
        assert "No space left on device" in str(err)
        assert f"file system mounted at {disk.path} has" in str(err)
        assert isinstance(err.__cause__, OSError)
        # Every id accounted for; the batch that hit the full disk is failed, not lost.
        assert report.accounted == report.requested == len(ids)
        assert report.aborted is not None and report.aborted.startswith("OutputWriteError")
        not_stored = [i for i, why in report.failed.items() if why.startswith("not stored")]
        assert not_stored and report.not_attempted > 0
        # Consistent on disk: final status, no temp file, no torn record.
        state = load_state(out.with_name(out.name + ".state.json"))
        assert state is not None and state.status == "aborted"
        assert state.summary["fetched"] == report.fetched
        assert leftovers(disk.path) == []
        first_stored = stored_ids(out)
        first_missing = missing_ids(out)
        assert len(first_stored) == len(set(first_stored)) == report.fetched
        assert set(first_stored).isdisjoint(not_stored)
        asked_first = len(server.requests)
        charged_first = server.stats().credits_spent

        disk.resize(16 * 1024)  # free space
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=2000,
                                   retry_policy=FAST) as client:
            again = await ka.crawl_video_details(client, ids, make_sink(disk.path))
        assert again.ok, again.failed
        assert again.skipped_resumed == len(first_stored) + len(first_missing)
        asked_again = requested_ids(server.requests[asked_first:])
        # Lossless, and no credit spent twice for anything that was stored.
        assert set(asked_again).isdisjoint(first_stored + first_missing)
        assert set(not_stored) <= set(asked_again)
        final = stored_ids(out)
        assert len(final) == len(set(final)) and set(final) == known
        assert set(missing_ids(out)) == set(ids) - known
        assert load_state(out.with_name(out.name + ".state.json")).status == "complete"
    print(  # the figures of docs/reliability.md (run with -s)
        f"\n{fmt}: full after fetched={report.fetched} missing={report.missing} "
        f"failed={len(report.failed)} not_attempted={report.not_attempted} "
        f"requests={asked_first} credits={report.credits_spent} (server charged "
        f"{charged_first}); resume asked "
        f"{len(asked_again)} ids, skipped {again.skipped_resumed}; final {len(final)} "
        f"records, {len(final) - len(set(final))} twice, "
        f"{len(known) - len(set(final) & known)} lost"
    )


async def test_ranking_disk_full_keeps_whole_pages_and_resumes(disk: Any) -> None:
    out = disk.path / "r.jsonl"
    async with FakeKeyAPI(ranking_length=2000) as server, ka.KeyAPIClient(
        KEY, base_url=server.url, qps=2000, retry_policy=FAST
    ) as client:
        with pytest.raises(ka.OutputWriteError) as caught:
            await ka.crawl_video_ranking(client, ka.JsonlSink(out), max_pages=150, **RANKING)
        report = caught.value.report  # type: ignore[attr-defined]
        stored = stored_ids(out)
        assert len(stored) == report.fetched == 10 * report.pages  # whole pages only
        state = load_state(out.with_name("r.jsonl.state.json"))
        assert state is not None and state.status == "aborted"
        assert state.pages_done == report.pages
        assert leftovers(disk.path) == []
        disk.resize(16 * 1024)
        again = await ka.crawl_video_ranking(client, ka.JsonlSink(out), max_pages=150,
                                             **RANKING)
        expected = await client.video_ranking(page_size=10, page_num=report.pages + 1,
                                              **RANKING)
    assert again.skipped_resumed == len(stored)
    final = stored_ids(out)
    assert len(final) == 1500 and len(set(final)) == 1500
    assert final[len(stored):len(stored) + 10] == [v.video_id for v in expected]


async def test_disk_already_full_refused_before_any_request(disk: Any) -> None:
    disk.fill()
    async with FakeKeyAPI() as server, ka.KeyAPIClient(
        KEY, base_url=server.url, retry_policy=FAST
    ) as client:
        with pytest.raises(ka.OutputWriteError, match="No space left on device"):
            await ka.crawl_video_details(client, server.make_ids(50),
                                         ka.JsonlSink(disk.path / "o.jsonl"))
        assert server.requests == []
    assert leftovers(disk.path) == [] and not (disk.path / "o.jsonl.lock").exists()


def test_cli_disk_full_one_line_summary_exit_3_then_resume(
    disk: Any, tmp_path: Path
) -> None:
    with ServerProcess() as server:
        ids = FakeKeyAPI().make_ids(1500)
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        out = disk.path / "out.jsonl"
        env = dict(os.environ, KEYAPI_API_KEY=KEY)
        env.pop("KEYAPI_BASE_URL", None)
        command = [sys.executable, "-m", "keyapi_async", "videos", str(ids_file), "-o",
                   str(out), "--base-url", server.url, "--qps", "500"]
        full = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert full.returncode == 3, full.stderr
        errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in full.stderr
        assert f"cannot write {out}: No space left on device" in errors[0]
        assert f"file system mounted at {disk.path}" in errors[0]
        assert "crawl summary: STOPPED" in full.stdout and "not attempted" in full.stdout
        state = json.loads(out.with_name("out.jsonl.state.json").read_text())
        assert state["status"] == "aborted" and state["summary"]["aborted"]
        assert leftovers(disk.path) == []
        stored = stored_ids(out) + missing_ids(out)
        asked_first = len(server.requests())

        disk.resize(16 * 1024)
        resumed = subprocess.run(command, env=env, capture_output=True, text=True,
                                 timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        assert set(requested_ids(server.requests()[asked_first:])).isdisjoint(stored)
        final = stored_ids(out)
        assert len(final) == len(set(final))
        assert set(final) | set(missing_ids(out)) == set(ids)


def test_cli_disk_already_full_exit_3_no_request(disk: Any, tmp_path: Path) -> None:
    with ServerProcess() as server:
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(FakeKeyAPI().make_ids(30)) + "\n")
        disk.fill()
        env = dict(os.environ, KEYAPI_API_KEY=KEY)
        done = subprocess.run(
            [sys.executable, "-m", "keyapi_async", "videos", str(ids_file), "-o",
             str(disk.path / "o.csv"), "--base-url", server.url],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 3
        assert done.stderr.startswith("error: cannot write") and done.stderr.count("\n") == 1
        assert server.requests() == []
        assert leftovers(disk.path) == []


# -- the two low-level guarantees the above rely on ----------------------------------


def test_failed_append_leaves_no_partial_record(disk: Any) -> None:
    path = disk.path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        write_all(fd, b"x" * 4096 + b"\n")
        free = os.statvfs(disk.path).f_bavail * os.statvfs(disk.path).f_frsize
        with pytest.raises(OSError) as caught:
            write_all(fd, b"y" * (free + 65536))  # the first write is short, the next fails
        assert caught.value.errno == errno.ENOSPC
        assert path.read_bytes() == b"x" * 4096 + b"\n"
    finally:
        os.close(fd)


def test_state_saved_in_place_when_no_temp_file_fits(disk: Any) -> None:
    path = disk.path / "o.state.json"
    save_state(path, CrawlState(kind="videos", params={}))
    assert path.stat().st_size == 4096  # padded to a page: the room for the final state
    disk.fill()
    summary = {"fetched": 1234, "aborted": "OutputWriteError: " + "z" * 2000}
    save_state(path, CrawlState(kind="videos", params={}, status="aborted", summary=summary))
    state = load_state(path)
    assert state is not None and state.status == "aborted" and state.summary == summary
    assert leftovers(disk.path) == []
    # A state that does not fit the old pages cannot be saved: an error, still no .tmp.
    with pytest.raises(OSError):
        save_state(path, CrawlState(kind="videos", params={}, summary={"x": "y" * 9000}))
    assert leftovers(disk.path) == []
    assert msgspec.json.decode(path.read_bytes())["status"] == "aborted"
