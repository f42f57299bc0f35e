"""The files a resumable crawl keeps beside its output.

* ``OUT.state.json``: what the crawl is (kind and parameters, so a resume cannot mix two
  different crawls into one output), its status and its last summary. Small, rewritten
  atomically (temp file, fsync, ``os.replace``) at the start and at the end of a run, and
  after every page of a ranking crawl. It is padded with spaces to whole 4 KiB pages (the
  blocks it takes anyway): when the disk is full and no temp file can be written, the
  final status is written over the blocks the file already has, so a crawl stopped by a
  full disk never leaves its state at "running".
* ``OUT.missing.txt``: ids the API said it does not know, one a line, appended per batch
  like the output itself. An append-only journal rather than a list inside the state
  file: rewriting a list of 100,000 missing ids after every batch would cost O(n^2).

The records already in the output are the source of truth for what was fetched; the
state never duplicates them, so it cannot disagree with them after a kill -9.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from .sinks.base import write_all

__all__ = ["STATE_VERSION", "CrawlState", "MissingLog", "load_state", "save_state"]

STATE_VERSION = 1


class CrawlState(msgspec.Struct, kw_only=True):
    """The content of ``OUT.state.json``. Never holds the API key or the base URL's secrets."""

    version: int = STATE_VERSION
    kind: str
    params: dict[str, Any]
    #: running, complete, interrupted, aborted or failed
    status: str = "running"
    #: ranking crawls: pages of the list stored in the output
    pages_done: int = 0
    summary: dict[str, Any] = msgspec.field(default_factory=dict)
    #: the pacing rate at the last 429 (qps="auto" resumes from it), if one was seen
    learned_qps: float | None = None


_STATE_DECODER = msgspec.json.Decoder(CrawlState)
_STATE_ENCODER = msgspec.json.Encoder()


def load_state(path: Path) -> CrawlState | None:
    """The state at ``path``, None if there is none; ValueError if it is unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return _STATE_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"unreadable crawl state {path}: {exc}") from None


#: The state file is padded to a multiple of this many bytes (see the module docstring).
STATE_PAGE = 4096
_FULL = (errno.ENOSPC, errno.EDQUOT)


def save_state(path: Path, state: CrawlState) -> None:
    """Write ``state`` atomically: readers see the old file or the new one, never half.

    On a full disk (ENOSPC, EDQUOT) the temp file is removed and the state is written in
    place instead, if it fits in the blocks the file already has; else the OSError is
    raised. Either way no ``.tmp`` file is left behind.
    """
    body = msgspec.json.format(_STATE_ENCODER.encode(state))
    size = -(-(len(body) + 1) // STATE_PAGE) * STATE_PAGE
    data = body + b" " * (size - len(body) - 1) + b"\n"
    temp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if exc.errno not in _FULL or not _overwrite(path, body):
            raise


def _overwrite(path: Path, body: bytes) -> bool:
    """Write ``body`` over the file's existing bytes (padded to its size); False if it
    does not fit. Not atomic, but one write of a page or two, which a kill cannot split."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        if size < len(body) + 1:
            return False
        if os.pwrite(fd, body + b" " * (size - len(body) - 1) + b"\n", 0) != size:
            return False
        os.fsync(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class MissingLog:
    """``OUT.missing.txt``: the ids the API does not know, appended a batch at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def recover(self) -> Iterator[str]:
        """Drop a torn last line, then yield the ids recorded so far."""
        if not self.path.exists():
            return
        with self.path.open("r+b") as handle:
            data = handle.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                handle.truncate(end)
        for line in data[:end].split(b"\n"):
            if line:
                yield line.decode("ascii")

    def append(self, ids: Iterable[str]) -> None:
        """Record ``ids`` in one write."""
        text = "".join(f"{i}\n" for i in ids)
        if not text:
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        write_all(self._fd, text.encode("ascii"))

    def discard(self) -> None:
        """Forget the ids of a previous run."""
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
