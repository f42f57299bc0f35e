"""Ids files as users really have them (issue 12, point 14).

UTF-16 from PowerShell's ``>``, UTF-8 with a BOM, pipes that can be read only once
(``-``, bash's ``<(cut ...)``) whose every id must still be checked before the first
request, CSV fields beyond the csv module's limit, directories, and files too big to hold
in memory: each gets either the ids or a one-line message with a line number, never a
traceback, and never a request before the whole input was checked.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_process import ServerProcess

from keyapi_async.bulk import idsfile
from keyapi_async.bulk.idsfile import IdsFile, check_ids_file
from keyapi_async.bulk.progress import ScanProgress
from keyapi_async.cli import main
from keyapi_async.pipeline.validation import video_id
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

KEY = "test-key"
IDS = FakeKeyAPI().make_ids(40)


def asked(server: ServerProcess) -> list[str]:
    return [vid for r in server.requests() if r["path"].endswith("/detail/analytics")
            for vid in r["params"]["video_ids"].split(",")]


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("KEYAPI_API_KEY", KEY)
    return dict(os.environ)


# -- encodings ------------------------------------------------------------------------

PLAIN = "# exported by a script\r\n" + "\r\n".join(IDS) + "\r\n"
TABLE = "title,video_id\r\n" + "".join(f'"clip {n}, ok",{vid}\r\n' for n, vid in
                                        enumerate(IDS))


@pytest.mark.parametrize("text", [PLAIN, TABLE], ids=["one-a-line", "csv"])
@pytest.mark.parametrize("encoding", [
    "utf-8",
    "utf-8-sig",  # Notepad, Excel's "CSV UTF-8"
    "utf-16",  # Windows PowerShell 5's `>`: UTF-16-LE with a BOM
    "utf-16-be-bom",
    "utf-16-le",  # no BOM: recognized by its NUL bytes
    "utf-32",
])
def test_encodings_read_with_line_numbers(text: str, encoding: str, tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    if encoding == "utf-16-be-bom":
        path.write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    else:
        path.write_bytes(text.encode(encoding))
    with IdsFile(path) as ids:
        check = check_ids_file(ids)
        assert check.ok and check.ids == len(IDS) and check.unique == len(IDS)
        assert list(ids) == IDS
    # Line numbers are the file's: the first id is on line 2 in both layouts.
    assert next(IdsFile(path).entries())[0] == 2


def test_powershell_utf16_file_crawls_end_to_end(
    tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(PLAIN.encode("utf-16"))
    out = tmp_path / "out.jsonl"
    assert main(["videos", str(path), "-o", str(out), "--mock", "--qps", "200"]) == 0
    stored = [line.split('"video_id":"')[1].split('"')[0] for line in out.read_text().splitlines()]
    assert sorted(stored) == sorted(i for i in IDS if FakeKeyAPI().is_known(i))


def test_undecodable_file_refused_with_its_line(
    server: ServerProcess, tmp_path: Path, env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes("\n".join(IDS[:5]).encode() + "\n# café\n".encode("latin-1"))
    code = main(["videos", str(path), "-o", str(tmp_path / "o.jsonl"),
                 "--base-url", server.url])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "line 6 is not valid utf-8 text" in err and "UTF-16 with a BOM" in err
    assert server.requests() == []


# -- sources read once -----------------------------------------------------------------


def _bash(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_process_substitution_fifo_crawled(
    server: ServerProcess, tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "export.csv").write_text("".join(f"{vid},clip {n}\n" for n, vid in
                                                 enumerate(IDS + IDS[:5])))
    done = _bash(
        f"{sys.executable} -m keyapi_async videos <(cut -d, -f1 export.csv) -o out.jsonl "
        f"--base-url {server.url}", env, tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "does not exist" not in done.stderr
    assert sorted(asked(server)) == sorted(IDS)  # each id once, the repeats dropped
    assert re.search(r"ids requested \(unique\) +40\n", done.stdout)


@pytest.mark.parametrize("how", ["fifo", "stdin"])
def test_bad_id_at_the_end_of_a_pipe_refused_before_any_request(
    how: str, server: ServerProcess, tmp_path: Path, env: dict[str, str]
) -> None:
    # 5,000 good ids, then a bad one: a crawl that started on the first ids would have
    # spent credits before seeing it.
    ids = FakeKeyAPI().make_ids(5000)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n7117191641181555995x\n")
    source = "<(cat ids.txt)" if how == "fifo" else "- < ids.txt"
    env = dict(env, TMPDIR=str(tmp_path))  # where the spool of the pipe would go
    done = _bash(f"{sys.executable} -m keyapi_async videos {source} -o out.jsonl "
                 f"--base-url {server.url}", env, tmp_path)
    assert done.returncode == 2
    assert "line 5001: invalid video id '7117191641181555995x'" in done.stderr
    assert server.requests() == []
    assert not list(tmp_path.glob("keyapi-ids-*"))


def test_fifo_written_by_a_thread(tmp_path: Path) -> None:
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as handle:
            handle.write("video_id\n" + "\n".join(IDS) + "\n")

    writer = threading.Thread(target=write)
    writer.start()
    with IdsFile(fifo) as ids:
        assert ids.once
        check = check_ids_file(ids)  # the one read of the pipe: spooled
        writer.join()
        assert check.ok and check.unique == len(IDS)
        assert list(ids) == IDS and list(ids) == IDS  # read again, from the spool
        spool = ids._spool
        assert spool is not None and spool.exists()
    assert not spool.exists()


def test_unchecked_pipe_can_be_read_once_only() -> None:
    ids = IdsFile("-", stdin=io.StringIO("1\n2\n"))
    assert list(ids) == ["1", "2"]
    with pytest.raises(ValueError, match="can be read only once"):
        list(ids)


# -- malformed input -------------------------------------------------------------------


def test_csv_field_over_the_csv_limit_refused_with_its_line(
    server: ServerProcess, tmp_path: Path, env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(f"video_id,notes\n{IDS[0]},short\n{IDS[1]},\"{'x' * 200_000}\"\n")
    code = main(["videos", str(path), "-o", str(tmp_path / "o.jsonl"),
                 "--base-url", server.url])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "_csv.Error" not in err
    assert "line 3: a field is longer than 131,072 characters" in err
    assert err.count("\n") == 1
    assert server.requests() == []


@pytest.mark.parametrize("target", ["directory", "missing"])
def test_directory_or_missing_ids_file_clear_message(
    target: str, tmp_path: Path, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path if target == "directory" else tmp_path / "nope.txt"
    assert main(["videos", str(path), "-o", str(tmp_path / "o.jsonl"), "--mock"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert ("is a directory" if target == "directory" else "does not exist") in err


# -- memory and progress ---------------------------------------------------------------


def test_validation_memory_flat_in_the_number_of_ids(tmp_path: Path) -> None:
    n = 100_000
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"{7_000_000_000_000_000_000 + i * 7_919}\n" for i in range(n)))
    tracemalloc.start()
    try:
        with IdsFile(path) as ids:
            check = check_ids_file(ids)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert check.unique == n
    # A set of the ids as ints took ~80 bytes an id; the compact set ~9, plus buffers.
    assert peak < 25 * n, f"{peak / n:.1f} bytes an id"


def test_one_huge_line_never_held_whole(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    with path.open("w") as handle:
        handle.write(f"{IDS[0]}\n")
        for _ in range(20):
            handle.write("9" * (1 << 20))  # a 20 MiB line (a binary file, say)
        handle.write(f"\n{IDS[1]}\n")
    tracemalloc.start()
    try:
        check = check_ids_file(IdsFile(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert check.ids == 3 and [p.line for p in check.problems] == [2]
    assert peak < 8 * (1 << 20), f"peak {peak / 2**20:.1f} MiB for a 20 MiB line"


def test_check_reports_progress_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idsfile, "PROGRESS_EVERY", 5000)
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"{7_000_000_000_000_000_000 + i}\n" for i in range(30_000)))
    calls: list[tuple[int, int | None, int | None]] = []
    check_ids_file(IdsFile(path), on_progress=lambda *args: calls.append(args))
    size = path.stat().st_size
    assert len(calls) >= 4 and calls[-1] == (30_000, size, size)
    entries = [c[0] for c in calls]
    done = [c[1] for c in calls]
    assert entries == sorted(entries) and done == sorted(done)  # type: ignore[type-var]
    assert all(total == size for _, _, total in calls)
    assert 0 < done[0] < size  # type: ignore[operator]


def test_scan_progress_quiet_for_small_files_then_periodic() -> None:
    now = [0.0]
    quiet = io.StringIO()
    small = ScanProgress("ids.txt", stream=quiet, interval=5.0, clock=lambda: now[0])
    small(10, 100, 100)
    small.finish()
    assert quiet.getvalue() == ""  # done within the first second: nothing printed

    out = io.StringIO()
    big = ScanProgress("big.txt", stream=out, interval=5.0, clock=lambda: now[0])
    for step in range(1, 21):  # 20 calls over 10 s
        now[0] = step * 0.5
        big(step * 65536, step * 2**20, 20 * 2**20)
    big.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "checking big.txt: 131,072 ids, 2/20 MiB (10%), 00:01"
    assert len(lines) == 3  # after the 1 s delay, 5 s later, and the final state
    assert lines[-1] == "checking big.txt: 1,310,720 ids, 20/20 MiB (100%), 00:10"


# -- the block reader against a line-by-line reference ---------------------------------

_line = st.one_of(
    st.integers(1, 10**20 - 1).map(str),
    st.sampled_from(["", "  ", "# a comment", "0", "00", "007", "12x", " 42 ", "\t9\t", "é1"]),
    st.text(alphabet="0123456789 #x", max_size=30),
)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(_line, max_size=40),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    chunk=st.integers(1, 12),
    final_newline=st.booleans(),
)
def test_block_reader_same_entries_as_reading_line_by_line(
    lines: list[str], ending: str, chunk: int, final_newline: bool
) -> None:
    text = ending.join(lines) + (ending if final_newline and lines else "")
    if any("," in line for line in lines):
        return
    expected = [
        (number, line.strip()) for number, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#")
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(idsfile._Lines, "CHUNK", chunk)  # lines and \r\n split across reads
        got = list(IdsFile("-", stdin=io.BytesIO(text.encode("utf-8"))).entries())
        path_check = check_ids_file(IdsFile("-", stdin=io.BytesIO(text.encode("utf-8"))))
    assert got == expected
    valid = [t for _, t in expected if _is_id(t)]
    assert path_check.ids == len(expected) and path_check.unique == len(set(valid))
    assert [p.line for p in path_check.problems] == [n for n, t in expected if not _is_id(t)]


def _is_id(text: str) -> bool:
    try:
        video_id(text)
    except ValueError:
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=25), st.text(alphabet="0123456789", max_size=25),
                 st.integers(0, 10**21).map(str)))
def test_fast_validity_check_agrees_with_video_id(text: str) -> None:
    assert bool(idsfile._VALID(text)) is _is_id(text)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(_line, st.text(alphabet='ab ,"\n#', max_size=12)), max_size=30),
    chunk=st.integers(1, 16),
    leading=st.sampled_from(["", "# exported\n", "\n\n"]),
)
def test_csv_block_reader_same_rows_as_the_csv_module(
    rows: list[tuple[str, str]], chunk: int, leading: str
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["note", "video_id"])
    for vid, note in rows:
        writer.writerow([note, vid])
    text = leading + out.getvalue()
    reference = csv.reader(io.StringIO(out.getvalue(), newline=""))
    next(reference)
    expected = [
        row[1].strip() for row in reference
        if row and not (len(row) == 1 and not row[0].strip())
        and not row[0].lstrip().startswith("#")
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(idsfile._Lines, "CHUNK", chunk)
        got = [t for _, t in IdsFile("-", stdin=io.BytesIO(text.encode())).entries()]
    assert got == expected
