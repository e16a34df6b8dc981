"""What the harness's report needs from pytest-html 4.x beyond its public hooks.

pytest-html writes report.html in place, so an interrupted run would leave half a file; and its page puts
each environment value into the DOM as HTML (``innerHTML``), so a model path or a CI variable holding
markup would run in the page. The harness wraps private methods of pytest-html's report plugin: the
write goes through a temp file and a rename, and the environment is escaped each time the page is
generated. This happens at pytest_sessionstart, once pytest-html's plugin exists (it registers itself in
its own pytest_configure). When a pytest-html release no longer has what is wrapped, the run stops with
a usage error naming the version, rather than writing a report that is silently unsafe or not atomic.
The Test cell, which pytest-html also builds from the node id unescaped, is rebuilt in the row hook.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.common.atomic import atomic_write_text
from harness.reports.markup import escape, html

# pytest_html.basereport.BaseReport's attributes that are wrapped or read.
REQUIRED = ("_report_path", "_write_report", "_generate_report", "_generate_environment", "_report")


def pytest_html_version() -> str:
    try:
        from pytest_html import __version__
    except ImportError:
        return "unknown"
    return str(__version__)


WriteError = Callable[[OSError, Path], None]


def adapt_report_plugins(config: pytest.Config, on_write_error: WriteError | None = None) -> int:
    """Wrap every pytest-html report plugin of this session; returns how many there are.

    ``on_write_error`` receives a failed write of report.html (a full disk) instead of pytest-html raising it,
    which would be an INTERNALERROR and stop the other end-of-run hooks.
    """
    if not getattr(config.option, "htmlpath", None) or hasattr(config, "workerinput"):
        return 0  # no report, or an xdist worker (the controller writes it)
    from pytest_html.basereport import BaseReport

    reports = [plugin for plugin in config.pluginmanager.get_plugins() if isinstance(plugin, BaseReport)]
    problems = [] if reports else ["no report plugin (pytest_html.basereport.BaseReport) is registered"]
    for report in reports:
        missing = [name for name in REQUIRED if not hasattr(report, name)]
        if not missing and not hasattr(report._report, "set_data"):
            missing.append("_report.set_data")
        if missing:
            problems.append(f"{type(report).__name__} lacks {', '.join(missing)}")
    if problems:
        raise pytest.UsageError(
            f"--html: the t2i harness cannot make pytest-html {pytest_html_version()}'s report atomic and escaped "
            f"({'; '.join(problems)}). It supports pytest-html 4.1 to 4.x: install one "
            "(pip install 'pytest-html>=4.1,<5'), or run without --html."
        )
    for report in reports:
        _wrap(report, on_write_error)
    return len(reports)


def _wrap(report: Any, on_write_error: WriteError | None) -> None:
    if getattr(report, "_t2i_wrapped", False):
        return
    path = Path(report._report_path)

    def write(rendered: str) -> None:
        try:
            atomic_write_text(path, rendered)
        except OSError as exc:
            if on_write_error is None:
                raise
            on_write_error(exc, path)

    report._write_report = write
    generate = report._generate_report

    def generate_escaped(*args: Any, **kwargs: Any) -> Any:
        report._report.set_data("environment", escaped_environment(report._generate_environment()))
        return generate(*args, **kwargs)

    report._generate_report = generate_escaped
    report._t2i_wrapped = True


def escaped_environment(metadata: dict[str, Any]) -> dict[str, Any]:
    """pytest-metadata's dict as pytest-html's page needs it: every value escaped (the keys of the table
    are set as text; the keys and values of a nested dict, such as "Packages", as HTML)."""
    shown: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dict):
            shown[key] = {str(escape(str(k))): str(escape(str(v))) for k, v in value.items()}
        else:
            shown[key] = str(escape(str(value)))
    return shown


def escape_test_id(report: Any, cells: list[str]) -> None:
    """For pytest_html_results_table_row: pytest-html puts the node id into the Test cell unescaped, so a case
    file or a parametrize id holding markup would run in the page. The cell is rebuilt from the id, escaped."""
    test_id = report.nodeid if report.when == "call" else f"{report.nodeid}::{report.when}"
    for index, cell in enumerate(cells):
        if cell.startswith('<td class="col-testId">'):
            cells[index] = str(html('<td class="col-testId">{}</td>', test_id))
            return
    raise RuntimeError(
        f"pytest-html {pytest_html_version()} builds its Test cell in a way the t2i harness does not know, so "
        "the harness cannot escape the test id in it; install pytest-html>=4.1,<5"
    )
