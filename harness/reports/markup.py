"""The one escaping rule of every page the harness writes (report rows, summary, merged report, comparison).

A fragment of HTML is a ``Markup``; anything else is text. ``html(template, ...)`` fills a literal template
with values and escapes each one that is not Markup already (quotes included, so values are safe inside
quoted attributes); ``join`` escapes its parts the same way. Templates are string literals of this package
(tests/test_safety.py checks it), so no value from a case file, a results.json, a baseline or a file name
can become markup.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from html import escape as _escape_text
from typing import Any
from urllib.parse import quote


class Markup(str):
    """HTML built by this module: inserted as it is. Build it with ``html`` and ``join`` only (``+`` on a
    str gives a plain str back, which would then be escaped: shown as text, never run)."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """Text as HTML: & < > " ' escaped. Markup is returned as it is."""
    if isinstance(value, Markup):
        return value
    return Markup(_escape_text(str(value), quote=True))


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Markup):
            if format_spec:
                raise ValueError(f"a Markup fragment takes no format spec, got {format_spec!r}")
            return value
        return escape(format(value, format_spec))


_FORMATTER = _EscapingFormatter()


def html(template: str, /, *args: object, **kwargs: object) -> Markup:
    """``template`` (a literal) with every argument escaped unless it is Markup; format specs work (``{:.4f}``)."""
    return Markup(_FORMATTER.vformat(template, args, kwargs))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    """The parts, each escaped unless it is Markup, between ``separator`` (a literal)."""
    return Markup(separator.join(escape(part) for part in parts))


def href(relative_posix_path: str) -> str:
    """A relative file path as a link target: every segment percent-encoded, so that no name reads as a
    scheme (a folder named ``javascript:...``) or a query. Still text: ``html`` escapes it in the attribute."""
    return quote(relative_posix_path, safe="/")
