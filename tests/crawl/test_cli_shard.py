"""`keyapi-async videos --shard I/N`: N workers split one ids file exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyapi_async.cli import main
from keyapi_async.testing import FakeKeyAPI


def test_shards_cover_every_id_exactly_once(tmp_path: Path) -> None:
    ids = FakeKeyAPI().make_ids(120)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids + ids[:7]) + "\n")  # duplicates land in one shard
    written: list[str] = []
    for i in (1, 2, 3):
        out = tmp_path / f"part{i}.jsonl"
        code = main(
            ["videos", str(ids_file), "--shard", f"{i}/3", "-o", str(out), "--mock", "--qps", "500"]
        )
        assert code == 0
        written += [json.loads(line)["video_id"] for line in out.read_text().splitlines()]
    assert len(written) == len(set(written))
    oracle = FakeKeyAPI()  # the embedded server uses the default seed
    assert set(written) == {i for i in ids if oracle.is_known(i)}


@pytest.mark.parametrize("bad", ["0/3", "4/3", "1/0", "x/2", "2"])
def test_bad_shard_spec_is_refused(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["videos", "ids.txt", "--shard", bad, "-o", str(tmp_path / "o.jsonl"), "--mock"])
    assert info.value.code == 2
    assert "--shard" in capsys.readouterr().err
