"""Reading an ids file for a crawl: validated whole first, then streamed lazily.

Accepted layouts: one id a line, or a CSV whose header has a ``video_id`` column. Blank
lines and lines starting with ``#`` are skipped. :func:`check_ids_file` reads the file
once and reports every invalid id with its line number, so a bad file is refused before
any request; :meth:`IdsFile.__iter__` then streams the ids again without holding them.
Standard input (``-``) cannot be read twice, so it is first spooled to a temporary file.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .errors import InvalidParameterError
from .validation import video_id

__all__ = ["IdProblem", "IdsCheck", "IdsFile", "check_ids_file"]

#: The column a CSV ids file must have.
ID_COLUMN = "video_id"


@dataclass(frozen=True)
class IdProblem:
    """An invalid entry of an ids file: 1-based line number and the offending text."""

    line: int
    text: str

    def __str__(self) -> str:
        shown = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"line {self.line}: invalid video id {shown!r}"


@dataclass
class IdsCheck:
    """What a validation pass found: id count (with repeats), unique count, problems."""

    ids: int = 0
    unique: int = 0
    problems: list[IdProblem] = field(default_factory=list)
    #: Problems beyond the first ``max_problems`` are counted, not kept.
    more_problems: int = 0

    @property
    def ok(self) -> bool:
        """Whether every entry was a valid id."""
        return not self.problems


class IdsFile:
    """An ids file on disk (or standard input, spooled): iterate it for ``(line, text)``.

    Use as a context manager when the path may be ``-``: the spooled copy of standard
    input is removed on exit.
    """

    def __init__(self, path: str | os.PathLike[str], stdin: IO[str] | None = None) -> None:
        self._spool: Path | None = None
        if str(path) == "-":
            handle, name = tempfile.mkstemp(prefix="keyapi-ids-", suffix=".txt")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                shutil.copyfileobj(stdin or sys.stdin, out)
            self._spool = Path(name)
            self.path = self._spool
            self.name = "<stdin>"
        else:
            self.path = Path(path)
            self.name = str(path)
            if not self.path.is_file():
                raise InvalidParameterError(f"ids file {self.name!r} does not exist")

    def __enter__(self) -> IdsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the spooled copy of standard input, if any."""
        if self._spool is not None:
            self._spool.unlink(missing_ok=True)
            self._spool = None

    def entries(self) -> Iterator[tuple[int, str]]:
        """Yield ``(line_number, text)`` for every entry, comments and blanks skipped."""
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            first = _first_entry(handle)
            if first is None:
                return
            number, text = first
            if ID_COLUMN in _csv_cells(text):
                yield from _csv_entries(handle, number, text)
                return
            if "," in text:
                raise InvalidParameterError(
                    f"{self.name}: line {number} looks like CSV but has no "
                    f"{ID_COLUMN!r} column in its header"
                )
            yield number, text
            for line, raw in enumerate(handle, number + 1):
                text = raw.strip()
                if text and not text.startswith("#"):
                    yield line, text

    def __iter__(self) -> Iterator[str]:
        """Yield the ids as text (validate first with :func:`check_ids_file`)."""
        for _, text in self.entries():
            yield text


def _first_entry(handle: IO[str]) -> tuple[int, str] | None:
    for number, raw in enumerate(handle, 1):
        text = raw.strip()
        if text and not text.startswith("#"):
            return number, text
    return None


def _csv_cells(line: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader([line]), [])]


def _csv_entries(handle: IO[str], header_line: int, header: str) -> Iterator[tuple[int, str]]:
    column = _csv_cells(header).index(ID_COLUMN)
    # Line numbers: csv.reader counts physical lines it consumed (quoted newlines too).
    reader = csv.reader(handle)
    for row in reader:
        number = header_line + reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if row[0].lstrip().startswith("#"):
            continue
        yield number, row[column].strip() if column < len(row) else ""


def check_ids_file(ids: IdsFile, *, max_problems: int = 20) -> IdsCheck:
    """Validate every entry of ``ids``: counts, unique count and the invalid lines.

    Memory: the unique count keeps one int per distinct id for the length of the pass.
    """
    check = IdsCheck()
    seen: set[int | str] = set()
    for number, text in ids.entries():
        check.ids += 1
        try:
            vid = video_id(text)
        except InvalidParameterError:
            if len(check.problems) < max_problems:
                check.problems.append(IdProblem(number, text))
            else:
                check.more_problems += 1
            continue
        seen.add(compact_id(vid))
    check.unique = len(seen)
    return check


def compact_id(vid: str) -> int | str:
    """An id in the smallest exact form for a set: an int, unless a leading zero matters."""
    return vid if vid.startswith("0") else int(vid)


def format_problems(check: IdsCheck, name: str) -> str:
    """A report of the invalid lines of an ids file, for the CLI."""
    out = io.StringIO()
    total = len(check.problems) + check.more_problems
    out.write(f"{name}: {total} invalid id{'s' if total != 1 else ''}; nothing was sent\n")
    for problem in check.problems:
        out.write(f"  {problem}\n")
    if check.more_problems:
        out.write(f"  ... and {check.more_problems} more\n")
    out.write(
        "  an id is a positive decimal number of at most 20 digits; "
        "blank lines and '#' comments are skipped\n"
    )
    return out.getvalue()
