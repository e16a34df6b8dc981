"""JSON that someone hands the harness (a results.json, a baseline): read it, then check each value's shape.

Such a file is data from elsewhere. Reading it gives one line naming the file and what is wrong, never a
traceback; checking a value against the shape the harness expects gives a ShapeError naming the field,
what was expected and what is there, so that a caller can refuse just that part.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# A results.json or a baseline nests 5 levels at most. Anything much deeper is not one of them, and
# refusing it here keeps every later walk over the data (rendering, json.dumps) far from the recursion limit.
MAX_DEPTH = 32

T = TypeVar("T")


class JsonInputError(Exception):
    """A whole file that cannot be read as plain JSON; the message is one line naming it."""


def read_json(path: Path, what: str) -> Any:
    """The parsed content of ``path`` (a ``what``, e.g. "results.json"): finite numbers and valid strings only."""
    try:
        if not path.is_file():
            raise JsonInputError(f"{path}: not a readable {what}: not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        raise JsonInputError(f"{path}: not a readable {what}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonInputError(
            f"{path}: not a readable {what}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"{path}:{exc.lineno}: not a readable {what}: not valid JSON ({exc.msg})") from None
    except ValueError as exc:
        raise JsonInputError(f"{path}: not a readable {what}: {exc}") from None


def loads(text: str) -> Any:
    """``text`` parsed as untrusted JSON: finite numbers, bounded integers and depth, valid Unicode strings only.

    ValueError (json.JSONDecodeError for bad syntax) says what is wrong, in a phrase.
    """
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_short_int)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    problem = _unsafe_part(document)
    if problem:
        raise ValueError(problem)
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (scores are finite numbers)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > 40:  # past any seed (20 digits), and far below int()'s own limit of 4300
        raise ValueError(f"a whole number of {len(text.lstrip('-'))} digits is too large")
    return int(text)


def _unsafe_part(document: Any) -> str | None:
    """Why ``document`` is unsafe to walk or write back (too deep, a lone surrogate), else None. Iterative."""
    stack: list[tuple[Any, int, str]] = [(document, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels (at {where or 'the top'})"
        if isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return f"a key that is not valid Unicode (a lone surrogate escape) in {where or 'the top object'}"
                stack.append((item, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{where}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, str) and not _encodable(value):
            return f"a string that is not valid Unicode (a lone surrogate escape) at {where or 'the top'}"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Shapes: each check takes the value and its field name, and returns the typed value or raises.


class ShapeError(ValueError):
    """A value that is not what the harness expects at ``field``."""

    def __init__(self, field: str, expected: str, got: Any, missing: bool = False) -> None:
        self.field, self.expected = field, expected
        self.got = "nothing (the field is missing)" if missing else shown(got)
        where = f"field {field!r}: " if field else ""  # no field: the whole value (a record, a file)
        super().__init__(f"{where}expected {expected}, got {self.got}")


def shown(value: Any) -> str:
    """A JSON value as a message shows it: short, and printable on a terminal (repr escapes control characters)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


Check = Callable[[Any, str], T]
MISSING: Any = object()


class Fields:
    """The fields of one JSON object, read through checks: ``Fields(data, "clip").get("probs", numbers())``."""

    def __init__(self, data: Any, where: str = "") -> None:
        if not isinstance(data, dict):
            raise ShapeError(where, "an object", data)
        self.data = data
        self.where = where

    def field(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, check: Check[T], default: Any = MISSING) -> T:
        if name not in self.data:
            if default is MISSING:
                raise ShapeError(self.field(name), getattr(check, "expected", "a value"), None, missing=True)
            return default  # type: ignore[no-any-return]
        return check(self.data[name], self.field(name))


def _named(expected: str, check: Callable[[Any, str], T]) -> Check[T]:
    check.expected = expected  # type: ignore[attr-defined]
    return check


def any_value() -> Check[Any]:
    """Any JSON value, as it is (read further by the caller)."""

    def check(value: Any, field: str) -> Any:
        return value

    return _named("a value", check)


def refused(expected: str) -> Check[Any]:
    """A field that must not be read: it names what was expected there (for a required field that is missing)."""

    def check(value: Any, field: str) -> Any:
        raise ShapeError(field, expected, value)

    return _named(expected, check)


def text() -> Check[str]:
    def check(value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise ShapeError(field, "a string", value)
        return value

    return _named("a string", check)


def boolean() -> Check[bool]:
    def check(value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise ShapeError(field, "true or false", value)
        return value

    return _named("true or false", check)


def whole(low: int, high: int) -> Check[int]:
    expected = f"a whole number from {low} to {high}"

    def check(value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ShapeError(field, expected, value)
        return value

    return _named(expected, check)


def number(low: float = -math.inf, high: float = math.inf) -> Check[float]:
    if low > -math.inf and high < math.inf:
        expected = f"a number from {low:g} to {high:g}"
    else:
        expected = f"a number of {low:g} or more" if low > -math.inf else "a number"

    def check(value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ShapeError(field, expected, value)
        return float(value)

    return _named(expected, check)


def optional(inner: Check[T]) -> Check[T | None]:
    expected = f"{getattr(inner, 'expected', 'a value')} or null"

    def check(value: Any, field: str) -> T | None:
        if value is None:
            return None
        try:
            return inner(value, field)
        except ShapeError as exc:
            if exc.field != field:
                raise
            raise ShapeError(field, expected, value) from None

    return _named(expected, check)


def list_of(inner: Check[T], min_length: int = 0) -> Check[tuple[T, ...]]:
    what = getattr(inner, "expected", "values")
    expected = f"a list of {min_length} or more ({what} each)" if min_length else f"a list ({what} each)"

    def check(value: Any, field: str) -> tuple[T, ...]:
        if not isinstance(value, list) or len(value) < min_length:
            raise ShapeError(field, expected, value)
        return tuple(inner(item, f"{field}[{index}]") for index, item in enumerate(value))

    return _named(expected, check)


def mapping_of(inner: Check[T]) -> Check[dict[str, T]]:
    expected = f"an object ({getattr(inner, 'expected', 'values')} each)"

    def check(value: Any, field: str) -> dict[str, T]:
        if not isinstance(value, dict):
            raise ShapeError(field, expected, value)
        return {key: inner(item, f"{field}.{key}") for key, item in value.items()}

    return _named(expected, check)


def obj(parse: Callable[[Fields], T], expected: str = "an object") -> Check[T]:
    """An object, read by ``parse`` from its Fields."""

    def check(value: Any, field: str) -> T:
        return parse(Fields(value, field))

    return _named(expected, check)


def fields(expected: str = "an object") -> Check[Fields]:
    """An object, as Fields to read further."""
    return obj(lambda found: found, expected)
