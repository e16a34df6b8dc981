"""The summary above report.html's table: pass rates per file, tag and case, and a grid of every image.

Built from the same records as results.json, so every number here can be recomputed from that file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from harness.thumbnails import thumbnail_data_uri

# The grid is an overview (the table below has 256 px thumbnails): 96 px JPEGs shown at 64 CSS px stay
# sharp on 1.5x screens and keep 500 of them near 2 MB.
GRID_THUMB_PX = 96
OPEN_UP_TO = 30  # longer per-case tables start folded, so the grid and the results table stay in reach
GRID_QUALITY = 75
OUTCOME_GROUPS = {
    "passed": "passed",
    "failed": "failed",
    "error": "failed",
    "xpassed": "failed",
    "xfailed": "xfailed",
    "skipped": "skipped",
}


def outcome_group(record: dict[str, Any]) -> str:
    """passed, failed (failed, error or xpassed), xfailed, skipped; anything unfinished counts as failed."""
    return OUTCOME_GROUPS.get(str(record.get("outcome")), "failed")


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    xfailed: int = 0
    skipped: int = 0

    def add(self, record: dict[str, Any]) -> None:
        group = outcome_group(record)
        setattr(self, group, getattr(self, group) + 1)

    @property
    def run(self) -> int:
        """Items that ran: skipped ones say nothing about the prompt."""
        return self.passed + self.failed + self.xfailed

    @property
    def rate(self) -> str:
        return f"{100 * self.passed / self.run:.0f}%" if self.run else "-"


def tallies(records: Iterable[dict[str, Any]], keys: Any) -> dict[Any, Tally]:
    """One Tally per key; ``keys(record)`` names the groups a record belongs to."""
    result: dict[Any, Tally] = {}
    for record in records:
        for key in keys(record):
            result.setdefault(key, Tally()).add(record)
    return result


_STYLE = """
#t2i-summary { margin: 1em 0; }
#t2i-summary h2, #t2i-summary h3 { margin: 0.6em 0 0.3em; }
#t2i-summary table { border-collapse: collapse; margin: 0 2em 1em 0; display: inline-table; vertical-align: top; }
#t2i-summary th, #t2i-summary td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
#t2i-summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
#t2i-grid { display: flex; flex-wrap: wrap; gap: 4px; }
#t2i-grid a { display: block; border: 3px solid #999; width: 64px; height: 64px; overflow: hidden;
  font-size: 9px; color: #333; text-decoration: none; background: #f4f4f4; }
#t2i-grid img { width: 64px; height: 64px; object-fit: cover; display: block; }
#t2i-summary summary { cursor: pointer; font-weight: bold; margin: 0.6em 0 0.3em; }
#t2i-grid .t2i-passed { border-color: #2e7d32; }
#t2i-grid .t2i-failed { border-color: #c62828; }
#t2i-grid .t2i-xfailed { border-color: #ef8c00; }
#t2i-grid .t2i-skipped { border-color: #9e9e9e; }
.t2i-legend span { display: inline-block; padding: 0 6px; margin-right: 6px; color: #fff; }
.t2i-dot { display: inline-block; width: 10px; height: 10px; margin-right: 2px; }
.t2i-bg-passed { background: #2e7d32; } .t2i-bg-failed { background: #c62828; }
.t2i-bg-xfailed { background: #ef8c00; } .t2i-bg-skipped { background: #9e9e9e; }
"""


def summary_html(
    records: list[dict[str, Any]],
    report_dir: Path,
    html_dir: Path,
    grid_thumbnails: Mapping[str, str] | None = None,
) -> str:
    """The whole summary section; every user string is escaped.

    ``grid_thumbnails`` maps a record's ``image`` to its grid thumbnail when the caller already made
    it (report.row_cells does, from the same decode as the table's); others are made here.
    """
    if not records:
        return ""
    records = sorted(records, key=lambda r: (str(r["file"]), str(r["case"]), int(r["seed"])))
    total = Tally()
    for record in records:
        total.add(record)
    parts = [
        '<section id="t2i-summary">',
        f"<style>{_STYLE}</style>",
        "<h2>Prompt summary</h2>",
        f'<p id="t2i-totals" data-passed="{total.passed}" data-run="{total.run}" data-total="{len(records)}">'
        f"{len(records)} items: {total.passed} of {total.run} run passed ({total.rate}); "
        f"{total.failed} failed, {total.xfailed} xfailed, {total.skipped} skipped. "
        "Pass rate = passed / run; skipped items are not run.</p>",
        _baseline_line(records),
        _tally_table("t2i-by-file", "File", tallies(records, lambda r: [r["file"]])),
        _tally_table("t2i-by-tag", "Tag", dict(sorted(tallies(records, lambda r: r.get("tags") or []).items()))),
        _case_table(records),
        _grid(records, report_dir, html_dir, grid_thumbnails or {}),
        "</section>",
    ]
    return "\n".join(part for part in parts if part)


def _baseline_line(records: list[dict[str, Any]]) -> str:
    compared = [r["baseline"] for r in records if r.get("baseline")]
    if not compared:
        return ""
    counts: dict[str, int] = {}
    for baseline in compared:
        counts[baseline["status"]] = counts.get(baseline["status"], 0) + 1
    shown = ", ".join(f'<span data-status="{escape(s)}">{n} {escape(s)}</span>' for s, n in sorted(counts.items()))
    return f'<p id="t2i-baseline">Against baseline {escape(repr(compared[0]["name"]))}: {shown}.</p>'


def _tally_table(table_id: str, what: str, groups: dict[Any, Tally]) -> str:
    if not groups:
        return ""
    rows = [
        f'<tr data-key="{escape(str(key))}"><td>{escape(str(key))}</td>'
        f'<td class="num">{t.passed}</td><td class="num">{t.run}</td><td class="num">{t.rate}</td>'
        f'<td class="num">{t.failed}</td><td class="num">{t.xfailed}</td><td class="num">{t.skipped}</td></tr>'
        for key, t in groups.items()
    ]
    head = "".join(f"<th>{h}</th>" for h in (what, "Passed", "Run", "Pass rate", "Failed", "XFailed", "Skipped"))
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _case_table(records: list[dict[str, Any]]) -> str:
    by_case: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        by_case.setdefault((str(record["file"]), str(record["case"])), []).append(record)
    rows = []
    for (file, case), items in by_case.items():
        tally = Tally()
        for record in items:
            tally.add(record)
        dots = "".join(
            f'<span class="t2i-dot t2i-bg-{outcome_group(r)}" '
            f'title="seed {int(r["seed"])}: {escape(str(r["outcome"]))}"></span>'
            for r in items
        )
        rows.append(
            f'<tr data-key="{escape(file)}::{escape(case)}"><td>{escape(file)}</td><td>{escape(case)}</td>'
            f'<td class="num">{tally.passed}</td><td class="num">{tally.run}</td><td class="num">{tally.rate}</td>'
            f"<td>{dots}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("File", "Case", "Seeds passed", "Seeds run", "Pass rate", "Per seed"))
    return (
        f"<details{' open' if len(rows) <= OPEN_UP_TO else ''}><summary>Per case, across seeds ({len(rows)} cases)"
        f'</summary><table id="t2i-by-case"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        "</details>"
    )


def _grid(records: list[dict[str, Any]], report_dir: Path, html_dir: Path, grid_thumbnails: Mapping[str, str]) -> str:
    legend = "".join(f'<span class="t2i-bg-{g}">{g}</span>' for g in ("passed", "failed", "xfailed", "skipped"))
    cells = []
    for record in records:
        group = outcome_group(record)
        label = f"{record['case']} seed {int(record['seed'])}: {record['outcome']}"
        png = report_dir / record["image"] if record.get("image") else None
        if png is not None and png.is_file():
            href = Path(os.path.relpath(png, html_dir)).as_posix()
            uri = grid_thumbnails.get(record["image"]) or thumbnail_data_uri(png, GRID_THUMB_PX, GRID_QUALITY)
            inner = f'<img src="{uri}" alt="{escape(label)}"/>'
            cells.append(
                f'<a class="t2i-{group}" href="{escape(href)}" target="_blank" title="{escape(label)}">{inner}</a>'
            )
        else:
            cells.append(f'<a class="t2i-{group}" title="{escape(label)}">{escape(label)}</a>')
    return (
        f"<details open><summary>All {len(records)} images, by verdict</summary>"
        f'<p class="t2i-legend">{legend}</p><div id="t2i-grid">{"".join(cells)}</div></details>'
    )
