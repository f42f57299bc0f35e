"""A small real file system for disk-full and read-only tests: a tmpfs mounted by the test.

Mounting needs root (CAP_SYS_ADMIN); where it is refused, the tests using it skip and
say why. A tmpfs fills up exactly like a disk: ``write`` writes what fits, then fails with
ENOSPC, and ``mount -o remount,size=`` "frees space" for the resume half of a test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


class Tmpfs:
    """A tmpfs of ``size_kib`` KiB at ``path`` (a new directory)."""

    def __init__(self, path: Path, size_kib: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = _mount("-t", "tmpfs", "-o", f"size={size_kib}k,mode=0777", "tmpfs", str(path))
        if done.returncode:
            path.rmdir()
            pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {done.stderr.strip()}")

    def remount(self, options: str) -> None:
        done = _mount("-o", f"remount,{options}", str(self.path))
        assert done.returncode == 0, done.stderr

    def resize(self, size_kib: int) -> None:
        """Grow (free space) or shrink the file system."""
        self.remount(f"size={size_kib}k")

    def fill(self) -> None:
        """Take every free byte, so the next write fails with ENOSPC."""
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * 65536)  # a short write near the end, then ENOSPC
        except OSError:
            pass
        finally:
            os.close(fd)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.path)], capture_output=True, timeout=30)
        if os.path.ismount(self.path):  # still busy: detach lazily, never leave it behind
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)


@contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Tmpfs]:
    """Mount a tmpfs for the block, unmount it after (skips the test without root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill up needs root")
    fs = Tmpfs(path, size_kib)
    try:
        yield fs
    finally:
        fs.unmount()
