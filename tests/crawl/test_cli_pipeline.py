"""The CLI in pipelines: --version, -o - (JSONL on stdout), --json, empty ids files,
--region checked before any request."""

from __future__ import annotations

import argparse
import io
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.cli import main
from keyapi_async.pipeline.validation import REGIONS, check_region

RANKING = ["ranking", "--date", "2024-05-06", "--rank-field", "views", "--rank-type", "week",
           "--max-pages", "1"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"keyapi-async {ka.__version__}\n"


def test_regions_are_the_249_alpha_2_codes() -> None:
    assert len(REGIONS) == 249
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in REGIONS)
    assert {"US", "GB", "DE", "JP", "SS", "CW"} <= REGIONS
    assert not {"UK", "EU", "XK", "ZZ"} & REGIONS
    assert check_region("gb") == "GB" and check_region("Us") == "US"
    for bad in ("usa", "UK", " US", "", "U", None, 1):
        with pytest.raises(ka.InvalidParameterError, match="ISO 3166-1"):
            check_region(bad)


async def test_python_api_refuses_a_bad_region_before_sending(
    server: Any, make_client: Callable[..., ka.KeyAPIClient]
) -> None:
    async with make_client(server) as client:
        with pytest.raises(ka.InvalidParameterError, match="'usa'"):
            await client.video_ranking(date="2024-05-06", region="usa", video_rank_field=1,
                                       rank_type=2)
        page = await client.video_ranking(date="2024-05-06", region="gb", video_rank_field=1,
                                          rank_type=2)
    assert [r.params["region"] for r in server.requests] == ["GB"]
    assert page


def test_cli_region_usa_refused_with_no_request(
    spawn_server: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = spawn_server()
    monkeypatch.setenv("KEYAPI_API_KEY", "test-key")
    out = tmp_path / "r.jsonl"
    with pytest.raises(SystemExit) as caught:
        main([*RANKING, "--region", "usa", "--base-url", server.url, "-o", str(out)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "--region" in err and "'usa'" in err and "ISO 3166-1" in err
    assert server.requests() == []
    assert not out.exists()
    assert main([*RANKING, "--region", "gb", "--base-url", server.url, "-o", str(out)]) == 0
    assert {r["params"]["region"] for r in server.requests()} == {"GB"}


def test_cli_bad_date_names_the_option_not_python_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*RANKING, "--region", "US", "--mock", "-o", str(tmp_path / "r.jsonl")]
    for bad in ("2024-5-06", "06/05/2024", "2024-02-30"):
        args[2] = bad
        with pytest.raises(SystemExit) as caught:
            main(args)
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert "argument --date" in err and "YYYY-MM-DD" in err and bad in err
        assert "datetime" not in err


def _ids_file(tmp_path: Path, n: int) -> tuple[Path, set[str]]:
    from keyapi_async.testing import FakeKeyAPI

    fake = FakeKeyAPI()
    ids = fake.make_ids(n)
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    return path, {i for i in ids if fake.is_known(i)}


def test_dash_output_streams_jsonl_on_stdout_and_leaves_no_files(
    tmp_path: Path, helpers: Any
) -> None:
    ids_file, known = _ids_file(tmp_path, 60)
    work = tmp_path / "cwd"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "keyapi_async", "videos", str(ids_file), "-o", "-", "--mock",
         "--qps", "500"], cwd=work, env=helpers.cli_env(), capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["video_id"] for r in records} == known and len(records) == len(known)
    assert "crawl summary: OK" in done.stderr and "progress:" in done.stderr
    assert list(work.iterdir()) == []  # no '-', '-.missing.txt', '-.state.json', '-.lock'
    refused = helpers.cli("videos", str(ids_file), "-o", "-", "--format", "csv", "--mock")
    assert refused.returncode == 2 and "JSONL" in refused.stderr and refused.stdout == ""


def test_json_summary_is_one_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helpers: Any
) -> None:
    ids_file, known = _ids_file(tmp_path, 40)
    out = tmp_path / "o.jsonl"
    assert main(["videos", str(ids_file), "-o", str(out), "--mock", "--qps", "500",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is True and summary["exit_code"] == 0 and summary["error"] is None
    assert summary["fetched"] == len(known) and summary["requested"] == 40
    assert summary["failed_ids"] == {} and "list_complete" not in summary
    # With -o -: records alone on stdout, the JSON summary is the last line of stderr.
    done = helpers.cli("videos", str(ids_file), "-o", "-", "--mock", "--qps", "500", "--json")
    assert done.returncode == 0, done.stderr
    assert all("video_id" in json.loads(line) for line in done.stdout.splitlines())
    last = json.loads(done.stderr.strip().splitlines()[-1])
    assert last["ok"] is True and last["output"] is None
    # A refusal is JSON too.
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    assert main(["videos", str(empty), "-o", str(out), "--mock", "--json"]) == 2
    refusal = json.loads(capsys.readouterr().out)
    assert refusal["ok"] is False and refusal["exit_code"] == 2
    assert "no video ids" in refusal["error"]


def test_empty_ids_file_is_refused_without_a_request(
    spawn_server: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = spawn_server()
    monkeypatch.setenv("KEYAPI_API_KEY", "test-key")
    for text in ("", "# header only\n\n   \n"):
        empty = tmp_path / "ids.txt"
        empty.write_text(text)
        code = main(["videos", str(empty), "-o", str(tmp_path / "o.jsonl"),
                     "--base-url", server.url])
        captured = capsys.readouterr()
        assert code == 2
        assert "holds no video ids" in captured.err and "OK" not in captured.out
    assert server.requests() == []


def test_videos_on_a_directory_says_it_is_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["videos", str(tmp_path), "-o", str(tmp_path / "o.jsonl"), "--mock"]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "does not exist" not in err


def test_stopped_progress_shows_the_stopped_state_not_100_percent() -> None:
    from keyapi_async.bulk.progress import make_progress, status_line
    from keyapi_async.bulk.report import CrawlReport

    report = CrawlReport(requested=3000, fetched=1000, missing=100, not_attempted=1900,
                         aborted="interrupted", in_flight=3, elapsed=10.0)
    line = status_line(report, 3000)
    assert line.startswith("1,100/3,000 ids (37%)")
    assert "STOPPED (interrupted), 1,900 not attempted" in line
    assert "3 requests in flight when stopped (may be charged)" in line
    stream = io.StringIO()
    progress = make_progress(3000, stream=stream, interval=0.0)
    running = CrawlReport(requested=3000, fetched=3000, elapsed=1.0)
    progress(running)
    progress.finish(running)
    assert stream.getvalue().count("\n") == 1  # the final line is not printed twice


def test_rich_bar_labels_its_time_columns() -> None:
    pytest.importorskip("rich")
    from keyapi_async.bulk.progress import _RichBar
    from keyapi_async.bulk.report import CrawlReport

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = _RichBar(100, stream, "ids")
    bar.finish(CrawlReport(requested=100, fetched=40, not_attempted=60, aborted="interrupted",
                           elapsed=1.0))
    text = stream.getvalue()
    assert "elapsed" in text and "ETA" in text
    assert "40/100" in text and "STOPPED (interrupted)" in text


def test_state_summary_names_the_ranking_only_field(tmp_path: Path) -> None:
    ids_file, _ = _ids_file(tmp_path, 20)
    out = tmp_path / "v.jsonl"
    assert main(["videos", str(ids_file), "-o", str(out), "--mock", "--qps", "500"]) == 0
    state = json.loads((tmp_path / "v.jsonl.state.json").read_text())
    assert state["status"] == "complete" and "complete" not in state["summary"]
    assert "list_complete" not in state["summary"] and state["summary"]["ok"] is True
    ranking = tmp_path / "r.jsonl"
    assert main([*RANKING, "--region", "US", "--mock", "--qps", "500", "-o",
                 str(ranking)]) == 0
    state = json.loads((tmp_path / "r.jsonl.state.json").read_text())
    assert state["status"] == "partial" and state["summary"]["list_complete"] is False
    assert state["summary"]["pages"] == 1


def test_resume_conflict_names_the_option_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.jsonl"
    assert main([*RANKING, "--region", "US", "--mock", "--qps", "500", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main([*RANKING, "--region", "GB", "--mock", "--qps", "500", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--no-resume" in err and "{" not in err
    assert "ranking 2024-05-06 US by views per week" in err and "GB" in err


def test_mock_server_options_all_have_help() -> None:
    from keyapi_async.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name in ("mock-server", "ranking", "videos"):
        undocumented = [a.dest for a in commands.choices[name]._actions if not a.help]
        assert undocumented == [], name


def test_plain_http_warning_is_printed_once(tmp_path: Path, helpers: Any) -> None:
    ids_file, _ = _ids_file(tmp_path, 1)
    # A TEST-NET address: nothing answers; the warning comes before any request.
    done = helpers.cli("videos", str(ids_file), "-o", str(tmp_path / "o.jsonl"),
                       "--base-url", "http://192.0.2.1:9", "--timeout", "0.2",
                       "--max-retries", "0")
    assert done.stderr.count("plain http") == 1, done.stderr


def test_demo_explains_credits_and_leaves_no_temp_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEYAPI_API_KEY", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", "--ids", "300", "--qps", "500"]) == 0
    captured = capsys.readouterr()
    assert "credits: the server charged" in captured.out
    assert "removed the temp dir" in captured.err and "--out-dir" in captured.err
    assert list(tmp_path.glob("keyapi-demo-*")) == []


def test_charged_note_says_why() -> None:
    from keyapi_async.cli import _charged_note

    assert "exactly" in _charged_note(300, 300)
    note = _charged_note(300, 304)
    assert "4 more than the 300" in note and "asks again" in note


def test_second_ctrl_c_still_prints_a_summary_and_reports_requests_in_flight(
    spawn_server: Callable[..., Any], tmp_path: Path, helpers: Any
) -> None:
    # Answers take 20 s: whatever is on the wire at the second Ctrl-C is cut off in flight.
    server = spawn_server("--latency", "20")
    ids_file, _ = _ids_file(tmp_path, 200)
    out = tmp_path / "o.jsonl"
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "keyapi_async", "videos", str(ids_file), "-o", str(out),
             "--base-url", server.url, "--qps", "100", "--max-concurrency", "4",
             "--timeout", "60"],
            env=helpers.cli_env(), stdout=subprocess.PIPE, stderr=err, text=True,
        )
        try:
            helpers.wait_for(lambda: len(server.requests()) >= 4)
            proc.send_signal(signal.SIGINT)
            helpers.wait_for(lambda: "stopping:" in err_path.read_text())
            proc.send_signal(signal.SIGINT)
            stdout, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = err_path.read_text()
    assert proc.returncode == 130, stderr
    assert "crawl summary: STOPPED" in stdout and "interrupted" in stdout
    assert "in flight when stopped" in stdout and "may be charged" in stdout
    state = json.loads((tmp_path / "o.jsonl.state.json").read_text())
    assert state["status"] == "interrupted"
    assert state["summary"]["aborted"] == "interrupted"
    assert state["summary"]["in_flight"] >= 1
    assert "STOPPED (interrupted)" in stderr  # the last progress line, not 100 %
