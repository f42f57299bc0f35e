"""The CLI in pipelines: --version, -o - (JSONL on stdout), --json, empty ids files,
--region checked before any request."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.cli import main
from keyapi_async.validation import REGIONS, check_region

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
