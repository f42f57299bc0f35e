"""KEYAPI_LOG: levels, one handler, the application's logging respected, bad values."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from keyapi_async._logs import _StderrHandler, setup_logging


@pytest.mark.parametrize(("value", "level"), [("debug", logging.DEBUG), (" INFO ", logging.INFO)])
def test_the_variable_sets_the_sdk_logger_level(
    sdk_logger: logging.Logger, value: str, level: int
) -> None:
    setup_logging({"KEYAPI_LOG": value})
    assert sdk_logger.level == level


def test_unset_changes_nothing(sdk_logger: logging.Logger) -> None:
    before = (sdk_logger.level, list(sdk_logger.handlers))
    setup_logging({})
    setup_logging({"KEYAPI_LOG": ""})
    assert (sdk_logger.level, list(sdk_logger.handlers)) == before


def test_a_bad_value_is_ignored_with_a_warning(sdk_logger: logging.Logger) -> None:
    before = sdk_logger.level
    with pytest.warns(UserWarning, match="'debug' or 'info'"):
        setup_logging({"KEYAPI_LOG": "verbose"})
    assert sdk_logger.level == before


def test_a_handler_is_added_once_and_only_without_application_logging(
    sdk_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # an app that configured nothing
    setup_logging({"KEYAPI_LOG": "debug"})
    setup_logging({"KEYAPI_LOG": "debug"})
    assert sum(isinstance(h, _StderrHandler) for h in sdk_logger.handlers) == 1
    sdk_logger.handlers[:] = [h for h in sdk_logger.handlers if not isinstance(h, _StderrHandler)]
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])  # an app with logging
    setup_logging({"KEYAPI_LOG": "debug"})
    assert not any(isinstance(h, _StderrHandler) for h in sdk_logger.handlers)


def test_records_reach_stderr_in_a_fresh_process() -> None:
    code = (
        "import logging; from keyapi_async._logs import setup_logging; setup_logging();"
        "logging.getLogger('keyapi_async').debug('hello from the sdk');"
        "logging.getLogger('other').info('not ours')"
    )
    env = {"KEYAPI_LOG": "debug", "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    assert "keyapi_async" in done.stderr and "hello from the sdk" in done.stderr
    assert "DEBUG" in done.stderr
    assert "not ours" not in done.stderr  # other loggers untouched (no root handler added)
