"""The pytest-html hooks that put the harness's columns, rows and summary into report.html."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from harness.common.json_input import ShapeError
from harness.judging.formats import ordered_sections
from harness.pytest_plugin.pytest_html_compat import adapt_report_plugins, escape_test_id
from harness.pytest_plugin.session_state import get_state
from harness.reports.markup import Markup, html
from harness.reports.records import parse_record
from harness.reports.report_rows import Entry, case_row_cells, columns, entry_for, records_of, row_cells


class HtmlReportHooks:
    """Registered only when pytest-html is installed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._entries: dict[str, Entry] = {}  # by record id: made with the table's row, reused by the summary
        self._sections: list[str] = []  # the judge columns, fixed when the header is made

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Not in pytest_configure: pytest-html registers its report plugin in its own pytest_configure,
        # which may run after this plugin's. Before pytest-html's sessionstart, which may write a first page.
        adapt_report_plugins(self.config, get_state(self.config).output.failed)

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = "t2i-harness report"

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: Any
    ) -> None:
        # Above the table: pass rates per file, tag and case, and a grid of every image.
        from harness.reports.summary import summary_html

        entries = []
        for raw in get_state(self.config).finished.values():
            entry = self._entry(raw)
            if entry is not None:
                entries.append(entry)
        postfix.append(str(summary_html(entries, get_state(self.config).case_drifts)))

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        # After "Result" and "Test". pytest-html asks at the start of the session: the judges of installed
        # plugins and of the conftest.py files loaded at start-up get a column each.
        judges = get_state(self.config).judges.for_config(self.config)
        self._sections = ordered_sections(judges)
        titles = [judges[section].column_title for section in self._sections]
        cells[2:2] = [str(html("<th>{}</th>", name)) for name in columns(titles)]

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        escape_test_id(report, cells)
        raws = records_of(report)
        values: list[Markup] = [Markup()] * len(columns(self._sections))
        if raws:
            try:
                entries = [self._entry(raw, strict=True) for raw in raws]
            except ShapeError as exc:
                values[0] = html('<em class="t2i-refused">record not shown: {}</em>', str(exc))
            else:
                shown = [entry for entry in entries if entry is not None]
                # A rate-gated case's item carries a record per seed; its row shows them all.
                many = len(shown) > 1 or shown[0].record.min_pass_rate is not None
                values = case_row_cells(shown, self._sections) if many else row_cells(shown[0], self._sections)
        cells[2:2] = [str(html('<td class="col-t2i">{}</td>', value)) for value in values]

    def _entry(self, raw: dict[str, Any], strict: bool = False) -> Entry | None:
        try:
            record = parse_record(raw)
        except ShapeError:
            if strict:
                raise
            return None
        entry = self._entries.get(record.id)
        if entry is None or entry.record != record:
            entry = entry_for(record, get_state(self.config).report_dir, self._html_dir())
            self._entries[record.id] = entry
        return entry

    def _html_dir(self) -> Path:
        html_path = self.config.getoption("htmlpath")
        return (Path.cwd() / Path(os.path.expandvars(html_path)).expanduser()).parent

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # pytest-html renders the pytest-metadata dict at the end of the run, so models loaded
        # during the run still make it into the environment section.
        # pytest-metadata >= 3.0 (pinned): 2.x has no metadata_key, and the report would name no model.
        from pytest_metadata.plugin import metadata_key

        metadata = self.config.stash.get(metadata_key, None)
        if metadata is not None:
            metadata.update(get_state(self.config).environment)
