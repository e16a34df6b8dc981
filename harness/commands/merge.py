"""Merge several runs (report dirs from shards of one suite) into one report dir and one page.

Every input is read and checked before OUTPUT is touched. A record of the wrong shape is left out, an image
that is not a PNG inside its run is not copied (the record stays, without it); each such refusal is listed
on the page and returned, so that the command can print it and exit with status 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.common.atomic import atomic_write_bytes, atomic_write_text
from harness.common.json_input import JsonInputError
from harness.reports.markup import Markup, html, join
from harness.reports.records import Record, Refusal, RunResults, read_results, record_part
from harness.reports.report_rows import (
    Entry,
    columns,
    entry_with_image,
    image_problem,
    judge_columns_of,
    refusals_html,
    row_cells,
)
from harness.reports.results import RESULTS_FILE, write_results
from harness.reports.run_images import ImageRefused, RunImage, run_image
from harness.reports.summary import OUTCOME_GROUPS, summary_html


class MergeError(Exception):
    """A run that cannot be merged, or an output that cannot be written; the message names it and says why."""


@dataclass(frozen=True)
class MergeSummary:
    items: int
    runs: int
    replaced: list[str]  # ids found in more than one run (the later run's record wins)
    refusals: list[Refusal]  # records left out, images not copied


def _load(run: Path) -> RunResults:
    results = run / RESULTS_FILE if run.is_dir() else run
    if not results.exists():
        raise MergeError(f"{run}: no {RESULTS_FILE} here; give report dirs written by `pytest --t2i-report-dir`")
    try:
        return read_results(results)
    except JsonInputError as exc:
        raise MergeError(str(exc)) from None


def _inside(root: Path, relative: str) -> Path | None:
    path = (root / relative).resolve()
    return path if path.is_relative_to(root.resolve()) else None


def merge_runs(runs: list[Path], output: Path) -> MergeSummary:
    """Write OUTPUT/results.json, OUTPUT/images/... and OUTPUT/report.html from several runs."""
    if output.exists() and not output.is_dir():
        raise MergeError(f"-o {output}: exists and is not a directory; name the report dir to write")
    loaded = [_load(run) for run in runs]
    try:
        output.mkdir(parents=True, exist_ok=True)
        return _merge(loaded, output)
    except OSError as exc:
        raise MergeError(f"{output}: cannot write the merged report ({exc.strerror or exc})") from None


def _merge(loaded: list[RunResults], output: Path) -> MergeSummary:
    merged: dict[str, Entry] = {}
    replaced: list[str] = []
    refusals: list[Refusal] = []
    for run in loaded:
        refusals.extend(run.refusals)
        for index, record in run.records:
            entry, refused = _copy_image(run, record, output)
            if refused is not None:
                part = record_part(index, record.raw)
                refusals.append(Refusal(str(run.path), part, refused, "its image is left out"))
            if record.id in merged:
                replaced.append(record.id)
            merged[record.id] = entry
    environments = [run.environment for run in loaded]
    environment = environments[0] if all(e == environments[0] for e in environments) else {}
    if not environment:
        for number, env in enumerate(environments, start=1):
            environment.update({f"run {number}: {key}": value for key, value in env.items()})
    entries = list(merged.values())
    write_results(output, [entry.record.raw for entry in entries], environment)
    atomic_write_text(output / "report.html", render_page(entries, environment, refusals))
    return MergeSummary(items=len(entries), runs=len(loaded), replaced=replaced, refusals=refusals)


def _copy_image(run: RunResults, record: Record, output: Path) -> tuple[Entry, str | None]:
    """The record as merged (its image copied into OUTPUT), and why its image was refused, if it was."""
    if record.image is None:
        return Entry(record), None
    try:
        image = run_image(run.run_dir, record.image)
        target = _inside(output, record.image)
        if target is None:
            raise ImageRefused("would be written outside the output dir")
    except ImageRefused as exc:
        problem = image_problem(record.image, exc)
        return Entry(record.with_image(None), image_refused=problem), problem
    if target != image.path:
        atomic_write_bytes(target, image.data)  # the bytes that were checked, never a re-read
    return entry_with_image(record, RunImage(target, image.data, image.pixels), output), None


def render_page(entries: list[Entry], environment: dict[str, str], refusals: list[Refusal]) -> str:
    """A self-contained page: what was refused, the summary, the environment, and one row per item."""
    records = [entry.record for entry in entries]
    judges = judge_columns_of(records)
    sections = [section for section, _ in judges]
    header = join(html("<th>{}</th>", name) for name in ("Result", "Test", *columns([title for _, title in judges])))
    rows = join(
        html(
            '<tr><td class="t2i-outcome-{}">{}</td><td>{}</td>{}</tr>',
            entry.record.outcome if entry.record.outcome in OUTCOME_GROUPS else "other",
            entry.record.outcome,
            entry.record.id,
            join(html("<td>{}</td>", cell) for cell in row_cells(entry, sections)),
        )
        for entry in entries
    )
    env_rows = join(html("<tr><td>{}</td><td>{}</td></tr>", key, value) for key, value in environment.items())
    page = html(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"/><title>t2i-harness merged report</title>'
        "<style>{}</style></head><body><h1>t2i-harness merged report</h1>{}{}"
        '<h2>Environment</h2><table id="environment">{}</table>'
        '<h2>Results</h2><table id="results-table"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>'
        "</body></html>\n",
        Markup(_STYLE),
        refusals_html(refusals),
        summary_html(entries),
        env_rows,
        header,
        rows,
    )
    return str(page)


_STYLE = (
    "body{font-family:sans-serif} table{border-collapse:collapse} td,th{border:1px solid #ccc;"
    "padding:4px;vertical-align:top} .t2i-outcome-passed{color:#2e7d32} .t2i-outcome-failed{color:#c62828}"
    " #t2i-refused{border:2px solid #c62828;padding:0 1em;margin:1em 0} .t2i-refused{color:#c62828}"
)
