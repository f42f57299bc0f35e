"""The fake KeyAPI server as a subprocess (``python -m keyapi_async.testing``), with its
admin routes: for tests whose crawler is itself a subprocess, or gets killed, so the
server's request log must live on elsewhere."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from types import TracebackType
from typing import Any

import msgspec


class ServerProcess:
    """``python -m keyapi_async.testing`` as a subprocess, with its admin routes.

    Ready when constructed (it has printed its URL); ``stop()`` or a ``with`` block ends it.
    """

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "keyapi_async.testing", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise AssertionError(f"the fake server did not start: {line!r}")
        self.url = line.split()[-1]

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _get(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as resp:
            return msgspec.json.decode(resp.read())

    def requests(self) -> list[dict[str, Any]]:
        return list(self._get("/_fake/requests"))

    def reset(self) -> None:
        self._get("/_fake/reset", method="POST")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
