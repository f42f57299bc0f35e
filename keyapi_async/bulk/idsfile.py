"""Reading an ids file for a crawl: validated whole first, then streamed lazily.

Accepted layouts: one id a line, or a CSV whose header has a ``video_id`` column. Blank
lines and lines starting with ``#`` are skipped. Encodings: UTF-8 with or without a BOM,
and UTF-16 or UTF-32 with a BOM (Windows PowerShell's ``>`` writes UTF-16 with one);
UTF-16 without a BOM is recognized by its NUL bytes.

:func:`check_ids_file` reads the source once and reports every invalid id with its line
number, so a bad file is refused before any request; iterating the :class:`IdsFile` then
streams the ids again without holding them. Memory stays flat whatever the file: lines
are read with a length cap (a CSV line or field beyond it is refused with its line number,
never read whole) and the distinct ids are counted in a
:class:`~keyapi_async.bulk.idset.CompactIdSet` (about 9 bytes an id).

Standard input (``-``) and FIFOs (bash's ``<(cut ...)``) can be read only once: the check
reads them as they stream in and writes their valid ids to a temporary spool
file (ids only, one a line, a fraction of a CSV's size), which iterating then reads; the
spool is removed by :meth:`IdsFile.close`.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from ..pipeline.errors import InvalidParameterError
from ..pipeline.validation import video_id
from .idset import CompactIdSet

__all__ = ["IdProblem", "IdsCheck", "IdsFile", "ScanProgressCallback", "check_ids_file"]

#: The column a CSV ids file must have.
ID_COLUMN = "video_id"
#: Characters read at most for one line. A plain-layout line beyond it is an invalid id
#: (the rest of the line is skipped); a CSV line beyond it is refused.
MAX_LINE = 1 << 20
#: Entries between two calls of the check's progress callback.
PROGRESS_EVERY = 1 << 16

#: What :func:`~keyapi_async.pipeline.validation.video_id` accepts, as one C call per text: the
#: check's fast path (tests hold the two to the same answers).
_VALID = re.compile(r"(?=[0-9]{1,20}\Z)0*[1-9][0-9]*").fullmatch

#: ``(entries read, bytes read or None, total bytes or None)``; None where unknown (a pipe).
ScanProgressCallback = Callable[[int, int | None, int | None], None]

# Longest first: UTF-32-LE's BOM starts with UTF-16-LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


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


def _encoding(head: bytes) -> str:
    """The encoding of a file starting with ``head``: by its BOM, else by NULs, else UTF-8."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if b"\0" in head:
        # ASCII digits in UTF-16 without a BOM: every other byte is NUL.
        return "utf-16-le" if head[1::2].count(0) >= head[0::2].count(0) else "utf-16-be"
    return "utf-8"


class _Lines:
    """The lines of a byte stream decoded as ``encoding`` (or of a text stream, with
    ``encoding`` None), read in chunks of ``CHUNK`` characters and handed on a chunk's
    lines at a time (:meth:`blocks`), so the per-line work can be done in bulk.
    ``\\r\\n`` and ``\\r`` end lines like ``\\n``.

    No line costs more than ``MAX_LINE`` characters of memory: a longer one comes back cut
    to that length (the rest is read and dropped), or, in ``strict`` mode (CSV), is an
    error with its line number. Bytes that are not valid in the encoding are an error with
    their line number.
    """

    CHUNK = 1 << 16

    def __init__(self, source: IO[Any], name: str, encoding: str | None) -> None:
        self.source, self.name, self.encoding = source, name, encoding
        self.number = 0
        self.strict = False

    def _chunks(self) -> Iterator[str]:
        """The decoded text, newlines translated, chunk by chunk."""
        decoder = (
            None if self.encoding is None
            else codecs.getincrementaldecoder(self.encoding)(errors="strict")
        )
        held = ""  # a trailing \r: it may be the first half of \r\n
        while True:
            data = self.source.read(self.CHUNK)
            if decoder is None:
                text = data
            else:
                try:
                    text = decoder.decode(data, final=not data)
                except UnicodeDecodeError as exc:
                    line = self.number + 1 + exc.object[: exc.start].count(b"\n")
                    raise InvalidParameterError(
                        f"{self.name}: line {line} is not valid {self.encoding} text "
                        f"({exc.reason}); save the file as UTF-8 (or UTF-16 with a BOM)"
                    ) from None
            text = held + text
            held = ""
            if text.endswith("\r") and data:
                text, held = text[:-1], "\r"
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            if text:
                yield text
            if not data:
                return

    def blocks(self) -> Iterator[list[str]]:
        """The complete lines of each chunk read, without their newlines; after each
        block, ``number`` is the number of its last line."""
        carry = ""
        overlong = False  # dropping the rest of a line already returned cut
        for chunk in self._chunks():
            lines = (carry + chunk).split("\n")
            carry = lines.pop()
            if overlong and lines:
                overlong = False
                lines.pop(0)  # the end of the overlong line
            if overlong:
                carry = ""
            elif len(carry) >= MAX_LINE:
                lines.append(carry)  # returned now (cut), its rest dropped as it comes
                carry, overlong = "", True
            if lines:
                yield self._checked(lines)
        if carry and not overlong:
            yield self._checked([carry])

    def _checked(self, lines: list[str]) -> list[str]:
        base = self.number
        self.number += len(lines)
        if max(map(len, lines)) >= MAX_LINE:
            for offset, line in enumerate(lines):
                if len(line) >= MAX_LINE:
                    if self.strict:
                        raise InvalidParameterError(
                            f"{self.name}: line {base + offset + 1} is longer than "
                            f"{MAX_LINE:,} characters; is this an ids file?"
                        )
                    lines[offset] = line[:MAX_LINE]
        return lines

    def one_by_one(self, blocks: Iterator[list[str]], first: list[str]) -> Iterator[str]:
        """The lines of ``first`` (the rest of the current block) then of ``blocks``, one at
        a time with a newline, ``number`` following each: what the csv module reads."""
        block = first
        while True:
            base = self.number - len(block)
            for offset, line in enumerate(block, 1):
                self.number = base + offset
                yield line + "\n"
            block = next(blocks, None)  # type: ignore[arg-type]
            if block is None:
                return


class IdsFile:
    """An ids file, ``-`` (standard input) or a FIFO: iterate it for the ids as text.

    Check it with :func:`check_ids_file` first (a source that can be read only once is
    spooled by the check), and use it as a context manager, or call :meth:`close`, so the
    spool is removed.
    """

    def __init__(self, path: str | os.PathLike[str], stdin: IO[Any] | None = None) -> None:
        self._spool: Path | None = None
        self._consumed = False
        self._binary: IO[bytes] | None = None
        #: The file's size in bytes; None for a source read once.
        self.size: int | None = None
        if str(path) == "-":
            self.path: Path | None = None
            self.name = "<stdin>"
            self._stdin: IO[Any] | None = stdin if stdin is not None else sys.stdin
            #: Whether the source can be read only once (standard input, a FIFO).
            self.once = True
            return
        self.path = Path(path)
        self.name = str(path)
        self._stdin = None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            raise InvalidParameterError(f"ids file {self.name!r} does not exist") from None
        except OSError as exc:
            raise InvalidParameterError(
                f"ids file {self.name!r} cannot be read: {exc.strerror}"
            ) from None
        if stat.S_ISDIR(info.st_mode):
            raise InvalidParameterError(
                f"ids file {self.name!r} is a directory; give a file of ids (one a line, or "
                f"a CSV with a {ID_COLUMN!r} column), or - to read standard input"
            )
        self.once = not stat.S_ISREG(info.st_mode)  # a FIFO, /dev/fd/N of a pipe, a tty
        if not self.once:
            self.size = info.st_size

    def __enter__(self) -> IdsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the spool of a source read once, if any."""
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.unlink(missing_ok=True)

    @property
    def bytes_read(self) -> int | None:
        """How far the pass in progress has read the file; None for a pipe."""
        if self._binary is None or self.once:
            return None
        try:
            return self._binary.tell()
        except (OSError, ValueError):
            return None

    @contextlib.contextmanager
    def _source(self) -> Iterator[tuple[IO[Any], str | None]]:
        """The source as bytes and the encoding its first bytes show (or as text)."""
        binary: Any
        if self._stdin is not None:
            binary = getattr(self._stdin, "buffer", None)
            if binary is None and isinstance(self._stdin, io.TextIOBase):
                yield self._stdin, None  # already text (io.StringIO, say)
                return
            binary = binary or self._stdin
            if not hasattr(binary, "peek"):
                binary = io.BufferedReader(binary)
            owned = False
        else:
            assert self.path is not None
            try:
                binary = open(self.path, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise InvalidParameterError(
                    f"ids file {self.name!r} cannot be read: {exc.strerror}"
                ) from None
            owned = True
        self._binary = binary
        try:
            yield binary, _encoding(binary.peek(4096)[:4096])
        finally:
            self._binary = None
            if owned:
                binary.close()

    def entries(self) -> Iterator[tuple[int, str]]:
        """Yield ``(line_number, text)`` for every entry, comments and blanks skipped."""
        for texts, numbers in self._entry_blocks():
            yield from zip(numbers(), texts, strict=True)

    def __iter__(self) -> Iterator[str]:
        """Yield the ids as text (validate first with :func:`check_ids_file`)."""
        for texts, _ in self._entry_blocks():
            yield from texts

    def _entry_blocks(self) -> Iterator[tuple[list[str], Callable[[], list[int]]]]:
        """The entries, a block at a time: their texts, and a function giving their line
        numbers (computed only when asked: for the invalid ones)."""
        if self._spool is not None:
            with self._spool.open(encoding="ascii") as spooled:
                for first, texts in _spool_blocks(spooled):
                    yield texts, partial(_consecutive, first, len(texts))
            return
        if self.once:
            if self._consumed:
                raise InvalidParameterError(
                    f"{self.name} can be read only once; check it with check_ids_file "
                    "first, which keeps its ids for the crawl"
                )
            self._consumed = True
        with self._source() as (source, encoding):
            yield from self._parse(_Lines(source, self.name, encoding))

    def _parse(self, lines: _Lines) -> Iterator[tuple[list[str], Callable[[], list[int]]]]:
        blocks = lines.blocks()
        found = _first_entry(blocks)
        if found is None:
            return
        block, index, first = found
        header_line = lines.number - len(block) + index + 1
        if ID_COLUMN in _csv_cells(first):
            lines.strict = True
            rest = block[index + 1:]
            if max(map(len, rest), default=0) >= MAX_LINE:
                raise InvalidParameterError(  # a line cut before we knew it was CSV
                    f"{self.name}: a line after {header_line} is longer than {MAX_LINE:,} "
                    "characters; is this an ids file?"
                )
            yield from self._csv_blocks(lines, lines.one_by_one(blocks, rest), first)
            return
        if "," in first:
            raise InvalidParameterError(
                f"{self.name}: line {header_line} looks like CSV but has no "
                f"{ID_COLUMN!r} column in its header"
            )
        yield from _plain(block, lines.number - len(block), index)
        base = lines.number
        for block in blocks:
            yield from _plain(block, base, 0)
            base = lines.number

    def _csv_blocks(
        self, lines: _Lines, physical: Iterator[str], header: str
    ) -> Iterator[tuple[list[str], Callable[[], list[int]]]]:
        column = _csv_cells(header).index(ID_COLUMN)
        reader = csv.reader(physical)
        texts: list[str] = []
        numbers: list[int] = []
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                limit = csv.field_size_limit()
                detail = (
                    f"a field is longer than {limit:,} characters (the csv module's limit)"
                    if "field larger" in str(exc) else f"not valid CSV ({exc})"
                )
                raise InvalidParameterError(
                    f"{self.name}: line {lines.number}: {detail}; is this an ids file?"
                ) from None
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if row[0].lstrip().startswith("#"):
                continue
            # A row spanning lines (a quoted newline) is numbered by its last line.
            texts.append(row[column].strip() if column < len(row) else "")
            numbers.append(lines.number)
            if len(texts) >= 4096:
                yield texts, partial(list, numbers)
                texts, numbers = [], []
        if texts:
            yield texts, partial(list, numbers)

    @contextlib.contextmanager
    def _spooling(self) -> Iterator[IO[str] | None]:
        """For a source read once and not yet spooled: a spool to write the ids to, kept
        (and read by later passes) only if the pass completes."""
        if not self.once or self._spool is not None:
            yield None
            return
        handle, name = tempfile.mkstemp(prefix="keyapi-ids-", suffix=".txt")
        try:
            with os.fdopen(handle, "w", encoding="ascii") as spool:
                yield spool
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        self._spool = Path(name)


def _csv_cells(line: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader([line]), [])]


def _first_entry(blocks: Iterator[list[str]]) -> tuple[list[str], int, str] | None:
    """The block holding the first entry, its index there and its text."""
    for block in blocks:
        for index, raw in enumerate(block):
            text = raw.strip()
            if text and not text.startswith("#"):
                return block, index, text
    return None


def _consecutive(first: int, count: int) -> list[int]:
    return list(range(first, first + count))


def _plain(
    block: list[str], base: int, start: int
) -> Iterator[tuple[list[str], Callable[[], list[int]]]]:
    """The entries of a block of one-id-a-line lines (line ``base + 1`` first), from
    index ``start``: stripped, comments and blanks dropped, in list comprehensions."""
    stripped = [line.strip() for line in (block[start:] if start else block)]
    texts = [text for text in stripped if text and text[0] != "#"]
    if texts:
        yield texts, partial(_entry_numbers, stripped, base + start + 1)


def _entry_numbers(stripped: list[str], first: int) -> list[int]:
    return [first + i for i, text in enumerate(stripped) if text and text[0] != "#"]


def _spool_blocks(spooled: IO[str]) -> Iterator[tuple[int, list[str]]]:
    number = 1
    while True:
        texts = [line.rstrip("\n") for line in spooled.readlines(1 << 16)]
        if not texts:
            return
        yield number, texts
        number += len(texts)


def check_ids_file(
    ids: IdsFile,
    *,
    max_problems: int = 20,
    on_progress: ScanProgressCallback | None = None,
) -> IdsCheck:
    """Validate every entry of ``ids``: counts, unique count and the invalid lines.

    Memory: the distinct ids are counted in a compact set (about 9 bytes an id).
    ``on_progress(entries, bytes_read, total_bytes)`` is called about every
    ``PROGRESS_EVERY`` entries and at the end. A source read once (``-``, a FIFO) is
    spooled by this pass: its valid ids, for the crawl to read.
    """
    check = IdsCheck()
    seen = CompactIdSet()
    next_report = PROGRESS_EVERY
    with ids._spooling() as spool:
        for texts, numbers in ids._entry_blocks():
            check.ids += len(texts)
            if not all(map(_VALID, texts)):  # rare: find the bad ones and their lines
                valid: list[str] = []
                for number, text in zip(numbers(), texts, strict=True):
                    try:
                        valid.append(video_id(text))
                    except InvalidParameterError:
                        if len(check.problems) < max_problems:
                            # Cut: an overlong line may be 1 MiB.
                            check.problems.append(IdProblem(number, text[:100]))
                        else:
                            check.more_problems += 1
                texts = valid
            seen.update(texts)
            if spool is not None and texts:
                spool.write("\n".join(texts) + "\n")  # repeats too: the crawl drops them
            if on_progress is not None and check.ids >= next_report:
                next_report = check.ids + PROGRESS_EVERY
                on_progress(check.ids, ids.bytes_read, ids.size)
    check.unique = len(seen)
    if on_progress is not None:
        on_progress(check.ids, ids.size, ids.size)
    return check


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
