"""Every ``python`` block in docs/ runs against a FakeKeyAPI, so the examples cannot rot.

One test per page. Its blocks run in page order, each in a fresh namespace, inside one
temporary working directory, with ``KEYAPI_BASE_URL`` pointing at a FakeKeyAPI started for
the page and ``KEYAPI_API_KEY="test-key"``. A block may use top-level ``await`` or
``asyncio.run(main())``; the docs use the latter. Markers: see docs_blocks.py.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.util
import inspect
import io
import os
import signal
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyapi_async.testing import FakeKeyAPI

from .docs_blocks import Block, page_name, pages, python_blocks

#: The fake's ranking lists are short here so that examples crawling a whole list stay fast.
RANKING_LENGTH = 45
#: A generous bound on one block; a block that hangs fails instead of stalling the suite.
BLOCK_TIMEOUT = 60.0


class _ServerThread:
    """A FakeKeyAPI serving from its own event loop in a daemon thread.

    The examples call ``asyncio.run`` themselves, so the server cannot share their loop.
    """

    def __init__(self) -> None:
        self.server = FakeKeyAPI(ranking_length=RANKING_LENGTH)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeKeyAPI:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextlib.contextmanager
def _fake_server() -> Iterator[FakeKeyAPI]:
    with _ServerThread() as server:
        yield server


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (a hung block fails)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not in_main_thread:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"example still running after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_python(block: Block) -> str:
    """Execute one block in a fresh namespace; return what it printed."""
    code = compile(
        block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    namespace: dict[str, object] = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), _deadline(BLOCK_TIMEOUT):
        if code.co_flags & inspect.CO_COROUTINE:
            # Top-level await: the compiled module is a coroutine; give it a loop.
            asyncio.run(eval(code, namespace))
        else:
            exec(code, namespace)
    return out.getvalue()


def _run_pytest_file(block: Block, workdir: Path) -> str:
    """Write a ``title="test_*.py"`` block under its title and run pytest on it."""
    assert block.title is not None
    path = workdir / block.title
    path.write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
            str(path),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, f"{block.where}: pytest failed\n{result.stdout}{result.stderr}"
    return result.stdout


PAGES = [p for p in pages() if python_blocks(p)]


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_page_examples_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KEYAPI_API_KEY", "test-key")
    ran = 0
    written: list[str] = []
    try:
        with _fake_server() as server:
            monkeypatch.setenv("KEYAPI_BASE_URL", server.url)
            for block in python_blocks(page):
                if block.skip_reason is not None:
                    continue
                absent = [m for m in block.requires if importlib.util.find_spec(m) is None]
                if absent:
                    warnings.warn(
                        f"{block.where} not run: {', '.join(absent)} not installed",
                        stacklevel=1,
                    )
                    continue
                _run_block(block, tmp_path, written)
                ran += 1
    finally:
        for module in written:  # named files of this page must not leak into the next
            sys.modules.pop(module, None)
    assert ran, f"docs/{page.as_posix()}: no block ran"


def _run_block(block: Block, workdir: Path, written: list[str]) -> None:
    try:
        if block.title and block.title.startswith("test_"):
            _run_pytest_file(block, workdir)
            return
        if block.title and block.title.endswith(".py"):
            # A named file: later blocks of the same page may import it.
            (workdir / block.title).write_text(block.code, encoding="utf-8")
            written.append(block.title.removesuffix(".py"))
        _run_python(block)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, pytest.fail.Exception)):
            raise
        pytest.fail(f"{block.where} failed:\n{traceback.format_exc()}")


def test_every_python_block_is_run_or_justified() -> None:
    # The untested blocks are few and each says why; list them so a review sees them all.
    skipped = [b for p in pages() for b in python_blocks(p) if b.skip_reason]
    for block in skipped:
        assert len(block.skip_reason or "") >= 10, f"{block.where}: give a real reason"
    assert len(skipped) <= 6, [b.where for b in skipped]


@pytest.mark.parametrize(
    "code",
    [
        "import asyncio\nawait asyncio.sleep(0)\nprint('ran', __name__)\n",
        "import asyncio\nasync def main():\n    print('ran', __name__)\nasyncio.run(main())\n",
    ],
    ids=["top-level-await", "asyncio-run"],
)
def test_both_block_styles_run(code: str) -> None:
    # The docs use asyncio.run(main()); a block written with top-level await must work too.
    block = Block(page="x.md", line=1, language="python", title=None, code=code)
    assert _run_python(block) == "ran __main__\n"


def test_a_failing_block_fails() -> None:
    block = Block(page="x.md", line=1, language="python", title=None, code="1 / 0\n")
    with pytest.raises(ZeroDivisionError):
        _run_python(block)
