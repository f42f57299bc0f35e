"""An exclusive, non-blocking lock on a file path, released by the kernel when its holder dies.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a lock file (``msvcrt.locking`` on Windows).
It belongs to the open file, not to the path's content, so:

* a process killed with ``kill -9`` cannot leave a stale lock: the kernel closes its files
  and the lock goes with them; a leftover lock file is simply locked again;
* two opens of the lock file in one process are two holders, so two crawls in one process
  exclude each other just as two processes do.

Releasing unlinks the lock file while still holding it. A waiter that opened the old file
before the unlink would then lock an orphan inode, so :meth:`FileLock.acquire` checks, once
locked, that the path still names the file it holds, and starts over if not.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

__all__ = ["FileLock", "LockHeld"]


class LockHeld(Exception):
    """Another holder has the lock."""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True


class FileLock:
    """An exclusive lock on ``path`` (the lock file, created if needed)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock at once or raise :class:`LockHeld`; OSError if the file cannot be
        created (a missing or read-only directory)."""
        if self._fd is not None:
            return
        for _ in range(100):  # each retry means a holder released between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    raise LockHeld(str(self.path))
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                self._fd = fd
                return
            os.close(fd)
        raise LockHeld(str(self.path))  # pragma: no cover - a release storm

    def __del__(self) -> None:
        # Forgotten without release(): close the file, which drops the lock.
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only directory now: the kernel still drops the lock below
        finally:
            os.close(fd)
