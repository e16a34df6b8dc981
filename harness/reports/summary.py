"""The summary above a report's table: pass rates per file, tag and case, and a grid of every image.

Built from the same records as results.json, so every number here can be recomputed from that file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.reports.markup import Markup, html, join

if TYPE_CHECKING:
    from harness.reports.records import Record
    from harness.reports.report_rows import Entry

OPEN_UP_TO = 30  # longer per-case tables start folded, so the grid and the results table stay in reach
OUTCOME_GROUPS = {
    "passed": "passed",
    "failed": "failed",
    "error": "failed",
    "xpassed": "failed",
    "xfailed": "xfailed",
    "skipped": "skipped",
}
GROUPS = ("passed", "failed", "xfailed", "skipped")


def outcome_group(record: Record) -> str:
    """passed, failed (failed, error or xpassed), xfailed, skipped; anything unfinished counts as failed."""
    return OUTCOME_GROUPS.get(record.outcome, "failed")


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    xfailed: int = 0
    skipped: int = 0

    def add(self, record: Record) -> None:
        group = outcome_group(record)
        setattr(self, group, getattr(self, group) + 1)

    @property
    def run(self) -> int:
        """Items that ran: skipped ones say nothing about the prompt."""
        return self.passed + self.failed + self.xfailed

    @property
    def rate(self) -> str:
        return f"{100 * self.passed / self.run:.0f}%" if self.run else "-"


def tallies(records: Iterable[Record], keys: Callable[[Record], Iterable[Any]]) -> dict[Any, Tally]:
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


def summary_html(entries: list[Entry]) -> Markup:
    """The whole summary section, from the records and their checked images (harness.reports.report_rows.Entry)."""
    if not entries:
        return Markup()
    entries = sorted(entries, key=lambda e: e.record.key)
    records = [entry.record for entry in entries]
    total = Tally()
    for record in records:
        total.add(record)
    parts = [
        html('<section id="t2i-summary"><style>{}</style><h2>Prompt summary</h2>', Markup(_STYLE)),
        html(
            '<p id="t2i-totals" data-passed="{}" data-run="{}" data-total="{}">{} items: {} of {} run passed ({}); '
            "{} failed, {} xfailed, {} skipped. Pass rate = passed / run; skipped items are not run.</p>",
            total.passed,
            total.run,
            len(records),
            len(records),
            total.passed,
            total.run,
            total.rate,
            total.failed,
            total.xfailed,
            total.skipped,
        ),
        _baseline_line(records),
        _tally_table("t2i-by-file", "File", tallies(records, lambda r: [r.file])),
        _tally_table("t2i-by-tag", "Tag", dict(sorted(tallies(records, lambda r: r.tags).items()))),
        _case_table(records),
        _grid(entries),
        Markup("</section>"),
    ]
    return join((part for part in parts if part), "\n")


def _baseline_line(records: list[Record]) -> Markup:
    compared = [r.baseline for r in records if r.baseline is not None]
    if not compared:
        return Markup()
    counts: dict[str, int] = {}
    for baseline in compared:
        counts[baseline.status] = counts.get(baseline.status, 0) + 1
    shown = join((html('<span data-status="{}">{} {}</span>', s, n, s) for s, n in sorted(counts.items())), ", ")
    return html('<p id="t2i-baseline">Against baseline {}: {}.</p>', repr(compared[0].name), shown)


def _tally_table(table_id: str, what: str, groups: dict[Any, Tally]) -> Markup:
    if not groups:
        return Markup()
    rows = [
        html(
            '<tr data-key="{0}"><td>{0}</td><td class="num">{1}</td><td class="num">{2}</td><td class="num">{3}</td>'
            '<td class="num">{4}</td><td class="num">{5}</td><td class="num">{6}</td></tr>',
            str(key),
            *(t.passed, t.run, t.rate, t.failed, t.xfailed, t.skipped),
        )
        for key, t in groups.items()
    ]
    head = join(html("<th>{}</th>", h) for h in (what, "Passed", "Run", "Pass rate", "Failed", "XFailed", "Skipped"))
    return html('<table id="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', table_id, head, join(rows))


def _case_table(records: list[Record]) -> Markup:
    by_case: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        by_case.setdefault((record.file, record.case), []).append(record)
    rows = []
    for (file, case), items in by_case.items():
        tally = Tally()
        for record in items:
            tally.add(record)
        dots = join(
            html('<span class="t2i-dot t2i-bg-{}" title="seed {}: {}"></span>', outcome_group(r), r.seed, r.outcome)
            for r in items
        )
        rows.append(
            html(
                '<tr data-key="{}::{}"><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td>'
                '<td class="num">{}</td><td>{}</td></tr>',
                file,
                case,
                file,
                case,
                tally.passed,
                tally.run,
                tally.rate,
                dots,
            )
        )
    head = join(html("<th>{}</th>", h) for h in ("File", "Case", "Seeds passed", "Seeds run", "Pass rate", "Per seed"))
    return html(
        '<details{}><summary>Per case, across seeds ({} cases)</summary><table id="t2i-by-case"><thead><tr>{}</tr>'
        "</thead><tbody>{}</tbody></table></details>",
        Markup(" open") if len(rows) <= OPEN_UP_TO else Markup(),
        len(rows),
        head,
        join(rows),
    )


def _grid(entries: list[Entry]) -> Markup:
    legend = join(html('<span class="t2i-bg-{}">{}</span>', g, g) for g in GROUPS)
    cells = []
    for entry in entries:
        record = entry.record
        group = outcome_group(record)
        label = f"{record.case} seed {record.seed}: {record.outcome}"
        if entry.image is not None:
            cells.append(
                html(
                    '<a class="t2i-{}" href="{}" target="_blank" title="{}"><img src="{}" alt="{}"/></a>',
                    group,
                    entry.image.href,
                    label,
                    entry.image.grid,
                    label,
                )
            )
        else:
            cells.append(html('<a class="t2i-{}" title="{}">{}</a>', group, label, label))
    return html(
        '<details open><summary>All {} images, by verdict</summary><p class="t2i-legend">{}</p>'
        '<div id="t2i-grid">{}</div></details>',
        len(entries),
        legend,
        join(cells),
    )
