"""Finding the code blocks of docs/*.md, with the markers that say how to run them.

Conventions, documented for writers in CONTRIBUTING.md ("Writing the documentation pages"):

* every fenced ``python`` block runs, in page order, each in a fresh namespace; the blocks
  of one page share a temporary working directory, so a block may read a file an earlier
  block of the same page wrote;
* ``<!-- no-test: REASON -->`` on the line before a block: not run (it needs a service the
  tests cannot have, such as Postgres); the reason is mandatory;
* ``<!-- requires: MODULE ... -->`` on the line before a block: run only if every MODULE
  is installed (otherwise skipped with a warning);
* a block fenced as ``python title="test_something.py"`` is a pytest file: it is written
  under that name and run with pytest;
* a block fenced as ``python title="name.py"`` is also written under that name (and run as
  ``__main__``), so later blocks of the page can ``import name``.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: The README's quick start must run as written too (its blocks follow the same markers).
README = DOCS.parent / "README.md"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,})(?P<info>.*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')
_NO_TEST = re.compile(r"^<!--\s*no-test:\s*(?P<reason>\S.*?)\s*-->$")
_NO_TEST_BARE = re.compile(r"^<!--\s*no-test\b")
_REQUIRES = re.compile(r"^<!--\s*requires:\s*(?P<modules>[\w.]+(?:\s+[\w.]+)*)\s*-->$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  # relative to docs/
    line: int  # 1-based line of the opening fence
    language: str
    title: str | None
    code: str
    skip_reason: str | None = None  # from <!-- no-test: ... -->
    requires: tuple[str, ...] = ()  # from <!-- requires: MODULE ... -->

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page under docs/, sorted, then the README."""
    return [*sorted(DOCS.rglob("*.md")), README]


def page_name(page: Path) -> str:
    """A page's path relative to docs/ (``../README.md`` for the README)."""
    return Path(os.path.relpath(page, DOCS)).as_posix()


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` (any language), in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    rel = page_name(page)
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, ticks, info = match["indent"], match["ticks"], match["info"].strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != ticks:
            body.append(lines[i])
            i += 1
        i += 1  # past the closing fence
        language = info.split()[0] if info else ""
        title = _TITLE.search(info)
        marker = _marker(lines, start)
        skip = _NO_TEST.match(marker)
        if skip is None and _NO_TEST_BARE.match(marker):
            raise ValueError(f"docs/{rel}:{start + 1}: write <!-- no-test: REASON -->")
        requires = _REQUIRES.match(marker)
        code = textwrap.dedent("\n".join(line[len(indent):] if line.startswith(indent) else line
                                         for line in body))
        found.append(
            Block(
                page=rel,
                line=start + 1,
                language=language,
                title=title["title"] if title else None,
                code=code + "\n",
                skip_reason=skip["reason"] if skip else None,
                requires=tuple(requires["modules"].split()) if requires else (),
            )
        )
    return found


def _marker(lines: list[str], fence: int) -> str:
    """The nearest non-blank line above a fence, stripped."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return lines[j].strip() if j >= 0 else ""


def python_blocks(page: Path) -> list[Block]:
    """The ``python`` blocks of ``page``."""
    return [b for b in blocks(page) if b.language == "python"]
