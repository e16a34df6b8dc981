"""Exceptions described in one line: what a failing item says instead of a traceback."""

from __future__ import annotations

import traceback
from pathlib import Path

# Frames of the test runner itself (pytest.fail, pytest-timeout's signal handler) say nothing about
# where the item was when an exception reached it.
_RUNNER_MODULES = ("_pytest", "pytest_timeout", "pluggy")


def describe_error(exc: BaseException) -> str:
    """An exception in one line: its type, the start of its message and the innermost place it came from."""
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
    where = innermost_frame(exc)
    return f"{message} ({where})" if where else message


def innermost_frame(exc: BaseException) -> str:
    """'at file.py:12 in function' for the innermost frame of ``exc`` outside the test runner, or ''."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    for frame in reversed(frames):
        if not any(f"/{module}" in frame.filename.replace("\\", "/") for module in _RUNNER_MODULES):
            return f"at {Path(frame.filename).name}:{frame.lineno} in {frame.name}"
    return ""
