"""Merge several runs (report dirs from shards of one suite) into one report dir and one page."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_text
from harness.report import COLUMNS, row_cells
from harness.results import RESULTS_FILE, write_results


class MergeError(Exception):
    """A run that cannot be merged; the message names it and says why."""


@dataclass(frozen=True)
class MergeSummary:
    items: int
    runs: int
    replaced: list[str]  # ids found in more than one run (the later run's record wins)


def _load(run: Path) -> dict[str, Any]:
    results = run / RESULTS_FILE if run.is_dir() else run
    try:
        document = json.loads(results.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MergeError(
            f"{run}: no {RESULTS_FILE} here; give report dirs written by `pytest --t2i-report-dir`"
        ) from None
    except json.JSONDecodeError as exc:
        raise MergeError(f"{results}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        raise MergeError(f"{results}: no 'results' list; is this a t2i-harness results.json?")
    return document


def _inside(root: Path, relative: str) -> Path | None:
    # results.json is data from elsewhere: an image path must stay inside its run.
    path = (root / relative).resolve()
    return path if path.is_relative_to(root.resolve()) else None


def merge_runs(runs: list[Path], output: Path) -> MergeSummary:
    """Write OUTPUT/results.json, OUTPUT/images/... and OUTPUT/report.html from several runs."""
    merged: dict[str, dict[str, Any]] = {}
    replaced: list[str] = []
    environments = []
    output.mkdir(parents=True, exist_ok=True)
    for run in runs:
        document = _load(run)
        root = run if run.is_dir() else run.parent
        environments.append(document.get("environment", {}))
        for record in document["results"]:
            record = dict(record)
            if record.get("image"):
                source = _inside(root, str(record["image"]))
                target = _inside(output, str(record["image"]))
                if source is None or target is None or not source.is_file():
                    record["image"] = None
                elif source != target:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
            if record["id"] in merged:
                replaced.append(record["id"])
            merged[record["id"]] = record
    environment = environments[0] if all(e == environments[0] for e in environments) else {}
    if not environment:
        for index, env in enumerate(environments, start=1):
            environment.update({f"run {index}: {key}": value for key, value in env.items()})
    records = list(merged.values())
    write_results(output, records, environment)
    atomic_write_text(output / "report.html", render_page(records, environment, output))
    return MergeSummary(items=len(records), runs=len(runs), replaced=replaced)


def render_page(records: list[dict[str, Any]], environment: dict[str, str], report_dir: Path) -> str:
    """A self-contained page: the summary, the environment, and one row per item."""
    from harness.summary import summary_html

    header = "".join(f"<th>{escape(name)}</th>" for name in ("Result", "Test", *COLUMNS))
    grid_thumbnails: dict[str, str] = {}  # filled by row_cells, so each PNG is decoded once
    rows = "".join(
        "<tr>"
        + f'<td class="t2i-outcome-{escape(str(r.get("outcome")))}">{escape(str(r.get("outcome")))}</td>'
        + f"<td>{escape(str(r['id']))}</td>"
        + "".join(f"<td>{cell}</td>" for cell in row_cells(r, report_dir, report_dir, grid_thumbnails))
        + "</tr>"
        for r in records
    )
    env_rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in environment.items())
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"/><title>t2i-harness merged report</title>'
        "<style>body{font-family:sans-serif} table{border-collapse:collapse} td,th{border:1px solid #ccc;"
        "padding:4px;vertical-align:top} .t2i-outcome-passed{color:#2e7d32} .t2i-outcome-failed{color:#c62828}"
        "</style></head><body><h1>t2i-harness merged report</h1>"
        + summary_html(records, report_dir, report_dir, grid_thumbnails)
        + f'<h2>Environment</h2><table id="environment">{env_rows}</table>'
        + f'<h2>Results</h2><table id="results-table"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>'
        + "</body></html>\n"
    )
