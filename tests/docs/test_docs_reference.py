"""The docs cover what the code has: every public name, every field, every CLI option.

Each test fails when the code grows something the docs do not mention, or when the docs
name something the code no longer has.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

import keyapi_async as ka
import keyapi_async.testing as kat
from keyapi_async.cli import build_parser

from .docs_blocks import DOCS

SPEC = DOCS.parents[1] / "shared" / "spec"
SPEC_FILES = {"detail": "000_*.txt", "ranking": "001_*.txt"}

_DIRECTIVE = re.compile(r"^::: (\S+)$", re.MULTILINE)
_ROW = re.compile(r"^\| `(?P<field>\w+)` \| (?P<upstream>[^|]+) \|", re.MULTILINE)


def _directives() -> set[str]:
    found: set[str] = set()
    for page in (DOCS / "reference").glob("*.md"):
        found.update(_DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    return found


def test_every_public_name_is_in_the_api_reference() -> None:
    directives = _directives()
    constants = (DOCS / "reference" / "client.md").read_text(encoding="utf-8")
    undocumented = [
        name for name in ka.__all__
        if f"keyapi_async.{name}" not in directives
        and f"`ka.{name}`" not in constants
    ]
    assert not undocumented
    testing = (DOCS / "reference" / "testing.md").read_text(encoding="utf-8")
    assert [
        n for n in kat.__all__
        if f"keyapi_async.testing.{n}" not in directives and f"`keyapi_async.testing.{n}`"
        not in testing
    ] == []


def test_reference_directives_name_existing_objects() -> None:
    import importlib

    for path in _directives():
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def _table(section: str) -> dict[str, str]:
    """field -> upstream type cell, from the table under ``## section`` of data-model.md."""
    text = (DOCS / "data-model.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return {m["field"]: m["upstream"].strip() for m in _ROW.finditer(body)}


@pytest.mark.parametrize(
    ("section", "record"), [("Video details", ka.VideoDetail), ("Ranking items", ka.RankedVideo)]
)
def test_data_model_table_lists_every_field(section: str, record: type[msgspec.Struct]) -> None:
    fields = [f.name for f in msgspec.structs.fields(record)]
    assert fields[-2:] == list(ka.LINEAGE_FIELDS)  # the crawl's, not the upstream's
    assert sorted(_table(section)) == sorted(fields[:-2])
    assert sorted(_table("Lineage")) == sorted(ka.LINEAGE_FIELDS)


def _spec_fields(pattern: str) -> dict[str, str]:
    """field -> type of the success answer's ``data`` items, read from the OpenAPI YAML."""
    [path] = SPEC.glob(pattern)
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "items:")
    props = next(i for i in range(start, len(lines)) if lines[i].strip() == "properties:")
    indent = len(lines[props]) - len(lines[props].lstrip()) + 2
    fields: dict[str, str] = {}
    name = None
    for line in lines[props + 1:]:
        depth = len(line) - len(line.lstrip())
        if line.strip() and depth < indent:
            break
        if depth == indent and line.strip().endswith(":"):
            name = line.strip()[:-1]
        elif depth == indent + 2 and line.strip().startswith("type:") and name:
            fields[name] = line.split(":", 1)[1].strip()
    return fields


@pytest.mark.skipif(not SPEC.is_dir(), reason="the upstream spec (../shared/spec) is not here")
@pytest.mark.parametrize(
    ("section", "endpoint"), [("Video details", "detail"), ("Ranking items", "ranking")]
)
def test_data_model_upstream_types_match_the_spec(section: str, endpoint: str) -> None:
    spec = _spec_fields(SPEC_FILES[endpoint])
    table = _table(section)
    assert len(spec) >= 20
    assert sorted(spec) == sorted(table)
    wrong = {f: (spec[f], table[f]) for f in spec if not table[f].startswith(spec[f])}
    assert not wrong


def test_every_cli_option_is_documented() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    [commands] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    missing = []
    for name, sub in commands.choices.items():  # type: ignore[attr-defined]
        if f"`{name}`" not in text and f"keyapi-async {name}" not in text:
            missing.append(name)
        for action in sub._actions:
            longest = max(action.option_strings, key=len, default=None)
            if longest and longest != "--help" and f"`{longest}" not in text:
                missing.append(f"{name} {longest}")
    assert not missing


def test_limiter_figure_is_up_to_date() -> None:
    import importlib.util

    script = DOCS / "scripts" / "limiter_windows.py"
    spec = importlib.util.spec_from_file_location("limiter_windows_figure", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = Path(module.OUTPUT).read_text(encoding="utf-8")
    assert module.generate() == committed, "run: python docs/scripts/limiter_windows.py"
