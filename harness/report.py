"""Report rows (shared by report.html and the merged report) and the pytest-html hooks that put them in place.

A row is built from a typed record (harness.records) and its image, checked by harness.run_images; it is
rendered through harness.markup, which escapes every value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.json_input import ShapeError, shown
from harness.markup import Markup, href, html, join
from harness.pytest_html_compat import adapt_report_plugins, escape_test_id
from harness.records import ClipResult, Record, Refusal, ResnetResult, parse_record
from harness.run_images import ImageRefused, RunImage, run_image
from harness.state import get_state
from harness.thumbnails import thumbnail_data_uris

# Enough to review an image at a glance; the full-size PNG is a click away. 500 rows stay light.
THUMBNAIL_PX = 160
# The summary grid is an overview: 96 px JPEGs shown at 64 CSS px stay sharp on 1.5x screens and keep
# 500 of them near 2 MB.
GRID_THUMB_PX = 96
GRID_QUALITY = 75
RECORD_PROPERTY = "t2i_record"
ENVIRONMENT_PROPERTY = "t2i_environment"

COLUMNS = ("Image", "Prompt", "Negative prompt", "Seed", "Steps", "Guidance", "Size", "CLIP", "ResNet top 5", "Timings")


def record_of(report: Any) -> dict[str, Any] | None:
    for name, value in getattr(report, "user_properties", ()):
        if name == RECORD_PROPERTY:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# What a page shows of one record.


@dataclass(frozen=True)
class ShownImage:
    href: str  # the full-size PNG, relative to the page, percent-encoded
    thumbnail: str  # JPEG data URI for the results table
    grid: str  # JPEG data URI for the summary grid


@dataclass(frozen=True)
class Entry:
    """One record as a page shows it: the record, and its image if that is safe to show."""

    record: Record
    image: ShownImage | None = None
    image_refused: str | None = None  # why the record names an image that is not shown


def entry_for(record: Record, run_dir: Path, page_dir: Path) -> Entry:
    """The record with its image from ``run_dir`` (checked by harness.run_images), linked from ``page_dir``."""
    if record.image is None:
        return Entry(record)
    try:
        image = run_image(run_dir, record.image)
    except ImageRefused as exc:
        return Entry(record, image_refused=image_problem(record.image, exc))
    return entry_with_image(record, image, page_dir)


def image_problem(image: str, refused: ImageRefused) -> str:
    return f"field 'image': {shown(image)} {refused}"


def entry_with_image(record: Record, image: RunImage, page_dir: Path) -> Entry:
    thumbnail, grid = thumbnail_data_uris(image.pixels, [(THUMBNAIL_PX, 80), (GRID_THUMB_PX, GRID_QUALITY)])
    link = href(Path(os.path.relpath(image.path, page_dir.resolve())).as_posix())
    return Entry(record, ShownImage(link, thumbnail, grid))


def clip_table(clip: ClipResult | None) -> Markup:
    if clip is None:
        return Markup()
    winner = clip.winner
    rows = []
    for index, (label, prob) in enumerate(zip(clip.labels, clip.probs, strict=True)):
        classes = " ".join(c for c, on in (("t2i-intended", index == 0), ("t2i-picked", index == winner)) if on)
        mark = " ".join(m for m, on in (("intended", index == 0), ("picked", index == winner)) if on)
        rows.append(html('<tr class="{}"><td>{:.4f}</td><td>{}</td><td>{}</td></tr>', classes, prob, mark, label))
    return html('<table class="t2i-clip">{}</table>', join(rows))


def resnet_table(resnet: ResnetResult | None) -> Markup:
    if resnet is None:
        return Markup()
    expected = set(resnet.expect)
    rows = [
        html('<tr class="{}"><td>{:.4f}</td><td>{}</td></tr>', "t2i-intended" if name in expected else "", prob, name)
        for name, prob in resnet.top
    ]
    return html(
        '<table class="t2i-resnet">{}</table><div>expected (top {}): {}</div>',
        join(rows),
        resnet.top_k,
        ", ".join(resnet.expect),
    )


def image_cell(entry: Entry) -> Markup:
    record, image = entry.record, entry.image
    if image is not None:
        return html(
            '<a href="{}" target="_blank"><img class="t2i-thumb" src="{}" alt="{}"/></a>',
            image.href,
            image.thumbnail,
            record.case,
        )
    if entry.image_refused is not None:
        return html('<em class="t2i-refused">image not shown: {}</em>', entry.image_refused)
    if record.fault:
        return html("<em>{}</em>", record.fault)
    return Markup()


def row_cells(entry: Entry) -> list[Markup]:
    """The report's cells for one record, in COLUMNS order."""
    record = entry.record
    if record.width is not None and record.height is not None:
        size = html("{}x{}", record.width, record.height)
    else:
        size = html("pipeline default")
    timings = join((html("{} {:.3f}", name, seconds) for name, seconds in record.timings.items()), "<br/>")
    if record.cached:
        timings = html('<div class="t2i-cached">image from cache</div>{}', timings)
    warnings = join(html('<div class="t2i-warning">&#9888; {}</div>', note) for note in record.warnings)
    return [
        image_cell(entry),
        html("{}{}", record.prompt, warnings),
        html("{}", record.negative_prompt or ""),
        html("{}", record.seed),
        html("{}", record.steps),
        html("{:g}", record.guidance_scale),
        size,
        clip_table(record.clip),
        resnet_table(record.resnet),
        timings,
    ]


def refusals_html(refusals: list[Refusal]) -> Markup:
    """The list of what an input had that was left out, at the top of a page; nothing when all was read."""
    if not refusals:
        return Markup()
    items = join(html("<li>{}</li>", str(refusal)) for refusal in refusals)
    return html(
        '<section id="t2i-refused"><h2>Refused input ({})</h2><p>These parts of the inputs are not shown as '
        "they are, for the reason given:</p><ul>{}</ul></section>",
        len(refusals),
        items,
    )


# ---------------------------------------------------------------------------------------------
# pytest-html.


class HtmlReportHooks:
    """Registered only when pytest-html is installed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._entries: dict[str, Entry] = {}  # by record id: made with the table's row, reused by the summary

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
        from harness.summary import summary_html

        entries = []
        for raw in get_state(self.config).finished.values():
            entry = self._entry(raw)
            if entry is not None:
                entries.append(entry)
        postfix.append(str(summary_html(entries)))

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        # After "Result" and "Test".
        cells[2:2] = [str(html("<th>{}</th>", name)) for name in COLUMNS]

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        escape_test_id(report, cells)
        raw = record_of(report)
        values: list[Markup] = [Markup()] * len(COLUMNS)
        if raw is not None:
            try:
                entry = self._entry(raw, strict=True)
            except ShapeError as exc:
                values[0] = html('<em class="t2i-refused">record not shown: {}</em>', str(exc))
            else:
                assert entry is not None
                values = row_cells(entry)
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
        try:
            from pytest_metadata.plugin import metadata_key
        except ImportError:
            return
        metadata = self.config.stash.get(metadata_key, None)
        if metadata is not None:
            metadata.update(get_state(self.config).environment)
