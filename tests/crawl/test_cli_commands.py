"""The keyapi-async command line: ids files, help, exit codes, demo, ranking, key hygiene."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyapi_async.bulk.idsfile import IdsFile, check_ids_file
from keyapi_async.cli import main
from keyapi_async.testing import FakeKeyAPI

CANARY = "sk-live-LEAKCANARY-7f3a9c2e51d04b6b"


def test_bad_ids_file_rejected_with_line_numbers_and_no_request(
    spawn_server: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = spawn_server()
    ids = tmp_path / "ids.txt"
    ids.write_text("# header comment\n7117191641181555995\n\n71171916411815x5995\n"
                   "123456789012345678901234\n7117191641181555996\n-5\n")
    monkeypatch.setenv("KEYAPI_API_KEY", "test-key")
    code = main(["videos", str(ids), "-o", str(tmp_path / "o.jsonl"), "--base-url", server.url])
    err = capsys.readouterr().err
    assert code == 2
    assert "3 invalid ids" in err and "nothing was sent" in err
    for line in ("line 4:", "line 5:", "line 7:"):
        assert line in err
    assert "line 2:" not in err and "line 6:" not in err
    assert server.requests() == []
    assert not (tmp_path / "o.jsonl").exists()


def test_ids_file_layouts(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_text("  # c\n\n12\n 34 \n#x\n56\n")
    assert list(IdsFile(plain)) == ["12", "34", "56"]
    table = tmp_path / "b.csv"
    table.write_text('# exported\nname,video_id\n"a, b",12\nc,34\n\nd,12\n')
    assert list(IdsFile(table)) == ["12", "34", "12"]
    check = check_ids_file(IdsFile(table))
    assert check.ok and check.ids == 3 and check.unique == 2
    headless = tmp_path / "c.csv"
    headless.write_text("id,name\n12,a\n")
    with pytest.raises(Exception, match="video_id"):
        list(IdsFile(headless))
    with IdsFile("-", stdin=io.StringIO("1\n2\n1\n")) as piped:
        assert check_ids_file(piped).unique == 2  # the one read of stdin, spooled
        spooled = piped._spool
        assert spooled is not None and spooled.exists()
        assert list(piped) == ["1", "2", "1"] and list(piped) == ["1", "2", "1"]
    assert not spooled.exists()


@pytest.mark.parametrize("command", ["videos", "ranking", "mock-server", "demo"])
def test_help_is_complete(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    if command in ("videos", "ranking"):
        for option in ("--base-url", "--api-key", "--mock", "--qps", "--format", "--no-resume",
                       "exit codes", "shell history"):
            assert option in out.replace("\n", " ").replace("  ", " ") or option in out


def test_no_key_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("12\n")
    assert main(["videos", str(ids), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "KEYAPI_API_KEY" in capsys.readouterr().err


def test_refused_key_exit_2_and_never_shown(
    spawn_server: Callable[..., Any], tmp_path: Path, helpers: Any
) -> None:
    server = spawn_server()
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(FakeKeyAPI().make_ids(30)) + "\n")
    out = tmp_path / "o.jsonl"
    done = helpers.cli("videos", str(ids), "-o", str(out), "--base-url", server.url, "-v",
                       env=helpers.cli_env(CANARY))
    assert done.returncode == 2, done.stderr
    assert "AuthenticationError" in done.stdout and "401" in done.stderr
    files = "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
    for text in (done.stdout, done.stderr, files):
        assert CANARY not in text and "LEAKCANARY" not in text
    assert len(server.requests()) == 1  # one 401, then nothing


def test_failed_ids_exit_1(
    spawn_server: Callable[..., Any], tmp_path: Path, helpers: Any
) -> None:
    server = spawn_server("--fault", "http_5xx=1.0")
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(FakeKeyAPI().make_ids(25)) + "\n")
    done = helpers.cli("videos", str(ids), "-o", str(tmp_path / "o.jsonl"),
                       "--base-url", server.url, "--max-retries", "0", "--qps", "100")
    assert done.returncode == 1, done.stderr
    assert re.search(r"\n  failed +25\n", done.stdout)
    assert len(server.requests()) == 3


def test_stdin_csv_with_mock(tmp_path: Path, helpers: Any) -> None:
    ids = FakeKeyAPI().make_ids(30)
    text = "video_id,note\n" + "".join(f"{i},x\n" for i in ids)
    out = tmp_path / "o.csv"
    done = helpers.cli("videos", "-", "-o", str(out), "--mock", "--qps", "50", stdin=text,
                       env=helpers.cli_env(""))
    assert done.returncode == 0, done.stderr
    assert "progress:" in done.stderr  # off a TTY: plain log lines
    rows = out.read_text().splitlines()
    assert rows[0].startswith("video_id,") and len(rows) - 1 == sum(
        FakeKeyAPI().is_known(i) for i in ids
    )


def test_demo_runs_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           helpers: Any) -> None:
    code = main(["demo", "--ids", "400", "--qps", "400", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "crawl summary: OK" in out and re.search(r"ids requested \(unique\) +400\n", out)
    written = helpers.jsonl_ids(tmp_path / "demo.jsonl")
    assert len(written) == len(set(written)) > 300


def test_ranking_command_with_mock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    args = ["ranking", "--date", "2024-05-06", "--region", "US", "--rank-field", "sales",
            "--rank-type", "week", "--ai", "false", "--max-pages", "3", "--mock",
            "--qps", "200", "-o", str(out)]
    assert main(args) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 30
    expected = FakeKeyAPI().ranking_records("2024-05-06", "US", 2, 2, created_by_ai=False)
    assert [json.loads(line)["video_id"] for line in lines] == [
        r["video_id"] for r in expected[:30]
    ]
    assert main([*args[:-4], "--max-pages", "4", "--qps", "200", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 40
    assert re.search(r"records stored +10\n", capsys.readouterr().out)


def test_ranking_bad_date_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ranking", "--date", "2024-05-01", "--region", "US", "--rank-field", "views",
            "--rank-type", "month", "--max-pages", "1", "--mock", "-o", str(tmp_path / "r.jsonl")]
    assert main(args) == 0  # the 1st: valid for a monthly list
    args[2] = "2024-05-02"
    assert main(args) == 2
    assert "the 1st" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [[], ["--no-lineage"]])
def test_cli_lineage_flag(tmp_path: Path, flag: list[str]) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(FakeKeyAPI().make_ids(12, known=True)) + "\n")
    out = tmp_path / "v.csv"
    assert main(["videos", str(ids), "-o", str(out), "--mock", "--qps", "200", *flag]) == 0
    header = out.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert ("fetched_at" in header) is (not flag) and ("request_id" in header) is (not flag)
