"""Report rows, shared by report.html (harness.pytest_plugin.html_report) and the merged report.

A row is built from a typed record (harness.reports.records) and its image, checked by harness.reports.run_images; it is
rendered through harness.reports.markup, which escapes every value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.common.json_input import shown
from harness.common.rate_statistics import percent
from harness.judging.formats import judge_columns
from harness.judging.judge import Verdict
from harness.reports.case_rates import CaseRate, case_rates
from harness.reports.markup import Markup, href, html, join
from harness.reports.records import Record, Refusal
from harness.reports.run_images import ImageRefused, RunImage, run_image
from harness.reports.thumbnails import thumbnail_data_uris

# Enough to review an image at a glance; the full-size PNG is a click away. 500 rows stay light.
THUMBNAIL_PX = 160
# The summary grid is an overview: 96 px JPEGs shown at 64 CSS px stay sharp on 1.5x screens and keep
# 500 of them near 2 MB.
GRID_THUMB_PX = 96
GRID_QUALITY = 75
RECORD_PROPERTY = "t2i_record"
ENVIRONMENT_PROPERTY = "t2i_environment"
CASE_DRIFT_PROPERTY = "t2i_case_baseline"  # a rate-gated case's comparison with the baseline

# A row's columns: these, one per judge, then the timings.
LEADING_COLUMNS = ("Image", "Prompt", "Negative prompt", "Seed", "Steps", "Guidance", "Size")
TRAILING_COLUMNS = ("Timings",)


def columns(judge_columns: list[str]) -> tuple[str, ...]:
    return (*LEADING_COLUMNS, *judge_columns, *TRAILING_COLUMNS)


def judge_columns_of(records: list[Record]) -> list[tuple[str, str]]:
    """(section, column title) of every judge the records have a verdict of, in column order."""
    return judge_columns(record.verdicts for record in records)


def records_of(report: Any) -> list[dict[str, Any]]:
    """The records an item's report carries: one per seed it ran (several for a rate-gated case)."""
    return [value for name, value in getattr(report, "user_properties", ()) if name == RECORD_PROPERTY]


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
    """The record with its image from ``run_dir`` (checked by harness.reports.run_images), linked from ``page_dir``."""
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


def verdict_table(section: str, verdict: Verdict | None) -> Markup:
    """A judge's cell: its table, as plain text in escaped cells (any judge's, from any results.json)."""
    if verdict is None:
        return Markup()
    rows = join(
        html(
            '<tr class="{}">{}</tr>',
            " ".join(f"t2i-{mark}" for mark in row.marks),
            join(html("<td>{}</td>", cell) for cell in row.cells),
        )
        for row in verdict.table.rows
    )
    note = html("<div>{}</div>", verdict.table.note) if verdict.table.note else Markup()
    return html('<table class="t2i-{}">{}</table>{}', section, rows, note)


def human_line(record: Record, section: str) -> Markup:
    """The human verdict on this image for a judge, under its table: who said what, and how it stands with the
    judge's verdict in this run (harness.reports.human_verdicts); nothing when no one reviewed it."""
    note = (record.human or {}).get(section)
    if note is None:
        return Markup()
    standing = "overrides" if note.overrides else "agrees" if note.agrees else "disagrees"
    return html(
        '<div class="t2i-human t2i-human-{}" data-human="{}" data-judge="{}">{}; {}</div>',
        standing,
        note.verdict,
        section,
        note.describe(),
        note.standing(),
    )


def judged(record: Record, section: str) -> Markup:
    """A judge's verdict on one record as a cell shows it: its table, and the human verdict on it if any."""
    return html("{}{}", verdict_table(section, record.verdicts.get(section)), human_line(record, section))


def judge_cells(record: Record, sections: list[str]) -> list[Markup]:
    """One cell per section; a verdict of a judge without a column (one found after the page's columns were
    set, in a folder's conftest.py) goes in the last judge cell, under its title."""
    cells = [judged(record, section) for section in sections]
    extra = [s for s in record.verdicts if s not in sections]
    if extra and cells:
        cells[-1] = join(
            [
                cells[-1],
                *(
                    html(
                        "<div><strong>{}</strong></div>{}",
                        record.verdicts[s].title,
                        judged(record, s),
                    )
                    for s in extra
                ),
            ]
        )
    return cells


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


def row_cells(entry: Entry, sections: list[str]) -> list[Markup]:
    """The report's cells for one record, in ``columns()`` order, with a judge column per section."""
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
        *judge_cells(record, sections),
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
# A rate-gated case: one pytest item, one row, every seed's image and verdicts in it.


def rate_line(rate: CaseRate) -> Markup:
    """'6 of 8 seeds passed (75%, 95% interval 41%-93%); needs 75%', with the unstable mark."""
    gate = html("; needs {}", percent(rate.min_pass_rate)) if rate.min_pass_rate is not None else Markup()
    unstable = html(' <span class="t2i-unstable">unstable</span>') if rate.unstable else Markup()
    return html('<div class="t2i-rate">{}{}{}</div>', rate.describe(), gate, unstable)


def score_summaries(rate: CaseRate, section: str) -> Markup:
    """A judge's scores over the case's seeds: mean and 95% interval, one row per score."""
    rows = []
    for summary in rate.scores.get(section, {}).values():
        interval = summary.interval
        shown = html("[{:.4f}, {:.4f}]", *interval) if interval is not None else html("(one seed)")
        rows.append(html("<tr><td>{:.4f}</td><td>{}</td><td>mean {}</td></tr>", summary.mean, shown, summary.label))
    return html('<table class="t2i-means">{}</table>', join(rows)) if rows else Markup()


def human_seeds_line(records: list[Record], section: str) -> Markup:
    """Above a rate-gated case's folded seeds: how many seeds have a human verdict for the judge, and how many of
    those the judge agrees with (each seed's own line is under its table)."""
    notes = [
        (record.verdicts[section], record.human[section])
        for record in records
        if record.human and section in record.human and section in record.verdicts
    ]
    if not notes:
        return Markup()
    agreed = sum(verdict.passed == note.passed for verdict, note in notes)
    overridden = sum(note.overrides for _, note in notes)
    applied = html("; {} decided by the human verdict", overridden) if overridden else Markup()
    return html(
        '<div class="t2i-human-seeds" data-reviewed="{}" data-agreed="{}">human verdicts on {} of {} seeds: the '
        "judge agrees on {}{}</div>",
        len(notes),
        agreed,
        len(notes),
        len(records),
        agreed,
        applied,
    )


def case_row_cells(entries: list[Entry], sections: list[str]) -> list[Markup]:
    """The report's cells for a rate-gated case's item: its seeds' images (each bordered by its own verdict),
    the rate with its interval, each judge's means, and each seed's tables folded under them."""
    records = [entry.record for entry in entries]
    rates = case_rates(records)  # none when every seed was skipped
    rate = rates[0] if rates else None
    images = join(
        html(
            '<figure class="t2i-seed t2i-seed-{}">{}<figcaption>seed {}: {}</figcaption></figure>',
            entry.record.outcome,
            image_cell(entry),
            entry.record.seed,
            entry.record.outcome,
        )
        for entry in entries
    )
    cells = row_cells(entries[0], sections)
    seeds = html("{} seeds", len(records))
    if rate is not None:
        seeds = html("{}{}", seeds, rate_line(rate))
    judges = []
    for index, section in enumerate(sections):
        per_seed = join(
            html("<div>seed {}</div>{}", record.seed, judged(record, section))
            for record in records
            if section in record.verdicts
        )
        summary = score_summaries(rate, section) if rate is not None else Markup()
        folded = html("<details><summary>per seed</summary>{}</details>", per_seed) if per_seed else Markup()
        human = human_seeds_line(records, section)
        judges.append(html("{}{}{}", summary, human, folded) if per_seed else cells[len(LEADING_COLUMNS) + index])
    totals: dict[str, float] = {}
    for record in records:
        for name, seconds in record.timings.items():
            totals[name] = totals.get(name, 0.0) + seconds
    timings = join((html("{} {:.3f}", name, seconds) for name, seconds in totals.items()), "<br/>")
    cached = sum(record.cached for record in records)
    if cached:
        timings = html('<div class="t2i-cached">{} of {} images from cache</div>{}', cached, len(records), timings)
    return [
        images,
        cells[1],
        cells[2],
        seeds,
        *cells[4 : len(LEADING_COLUMNS)],
        *judges,
        html("{}<div>(all seeds)</div>", timings),
    ]
