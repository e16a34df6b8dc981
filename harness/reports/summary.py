"""The summary above a report's table: pass rates per file, tag and case, and a grid of every image.

Built from the same records as results.json, so every number here can be recomputed from that file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.common.rate_statistics import percent
from harness.judging.formats import ordered_sections
from harness.reports.markup import Markup, html, join

if TYPE_CHECKING:
    from harness.reports.case_rates import CaseRate, ScoreSummary
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
.t2i-human { font-size: 90%; margin-top: 2px; padding: 1px 4px; border-left: 3px solid #999; }
.t2i-human-agrees { border-color: #2e7d32; } .t2i-human-disagrees { border-color: #ef8c00; }
.t2i-human-overrides { border-color: #c62828; font-weight: bold; }
#t2i-grid .t2i-passed { border-color: #2e7d32; }
#t2i-grid .t2i-failed { border-color: #c62828; }
#t2i-grid .t2i-xfailed { border-color: #ef8c00; }
#t2i-grid .t2i-skipped { border-color: #9e9e9e; }
.t2i-legend span { display: inline-block; padding: 0 6px; margin-right: 6px; color: #fff; }
.t2i-dot { display: inline-block; width: 10px; height: 10px; margin-right: 2px; }
.t2i-bg-passed { background: #2e7d32; } .t2i-bg-failed { background: #c62828; }
.t2i-bg-xfailed { background: #ef8c00; } .t2i-bg-skipped { background: #9e9e9e; }
#t2i-only-unstable:checked ~ #t2i-by-case tr.t2i-stable-case { display: none; }
.t2i-case-passed { color: #2e7d32; } .t2i-case-failed { color: #c62828; font-weight: bold; }
.t2i-unstable { background: #ef8c00; color: #fff; padding: 0 4px; }
figure.t2i-seed { display: inline-block; margin: 2px; border: 3px solid #999; font-size: 10px; }
figure.t2i-seed-passed { border-color: #2e7d32; }
figure.t2i-seed-failed, figure.t2i-seed-error { border-color: #c62828; }
figure.t2i-seed img.t2i-thumb { width: 96px; height: 96px; display: block; }
"""


def summary_html(entries: list[Entry], case_drifts: Mapping[tuple[str, str], dict[str, Any]] | None = None) -> Markup:
    """The whole summary section, from the records and their checked images (harness.reports.report_rows.Entry)."""
    if not entries:
        return Markup()
    entries = sorted(entries, key=lambda e: e.record.key)
    records = [entry.record for entry in entries]
    total = Tally()
    for record in records:
        total.add(record)
    cases = _cases(records)
    parts = [
        html('<section id="t2i-summary"><style>{}</style><h2>Prompt summary</h2>', Markup(_STYLE)),
        html(
            '<p id="t2i-totals" data-passed="{}" data-run="{}" data-total="{}">{} images (one per case and seed): '
            "{} of {} run passed ({}); {} failed, {} xfailed, {} skipped. Pass rate = passed / run; skipped ones are "
            "not run.</p>",
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
        _case_totals(cases),
        _baseline_line(records, case_drifts or {}),
        _tally_table("t2i-by-file", "File", tallies(records, lambda r: [r.file])),
        _tally_table("t2i-by-tag", "Tag", dict(sorted(tallies(records, lambda r: r.tags).items()))),
        _case_table(cases),
        _agreement_table(records),
        _human_table(records),
        _grid(entries),
        Markup("</section>"),
    ]
    return join((part for part in parts if part), "\n")


@dataclass(frozen=True)
class _Case:
    """One case of the run as the summary shows it: its seeds' records, its rate (None: no seed ran), its verdict."""

    records: list[Record]
    rate: CaseRate | None
    passed: bool


def _cases(records: list[Record]) -> dict[tuple[str, str], _Case]:
    from harness.reports.case_rates import by_case, case_passed, case_rates

    rates = {rate.key: rate for rate in case_rates(records)}
    return {
        key: _Case(items, rates.get(key), key in rates and case_passed(rates[key], items))
        for key, items in by_case(records).items()
    }


def _case_totals(cases: dict[tuple[str, str], _Case]) -> Markup:
    """Cases, as pytest counted them for rate-gated ones: passed, failed, unstable (seeds disagree)."""
    rates = [case.rate for case in cases.values() if case.rate is not None]
    if not rates:
        return Markup()
    passed = sum(case.passed for case in cases.values() if case.rate is not None)
    unstable = sum(rate.unstable for rate in rates)
    gated = sum(rate.min_pass_rate is not None for rate in rates)
    return html(
        '<p id="t2i-case-totals" data-cases="{}" data-passed="{}" data-unstable="{}" data-gated="{}">{} case{} run: '
        "{} passed, {} failed; {} unstable (their seeds disagree); {} judged by pass rate (min_pass_rate).</p>",
        len(rates),
        passed,
        unstable,
        gated,
        len(rates),
        "" if len(rates) == 1 else "s",
        passed,
        len(rates) - passed,
        unstable,
        gated,
    )


def _baseline_line(records: list[Record], case_drifts: Mapping[tuple[str, str], dict[str, Any]]) -> Markup:
    compared = [r.baseline for r in records if r.baseline is not None]
    if not compared:
        return Markup()
    counts: dict[str, int] = {}
    for baseline in compared:
        counts[baseline.status] = counts.get(baseline.status, 0) + 1
    shown = join((html('<span data-status="{}">{} {}</span>', s, n, s) for s, n in sorted(counts.items())), ", ")
    cases = Markup()
    if case_drifts:  # the rate-gated cases, judged by their rates (a seed's status above is shown, not gated)
        by_status: dict[str, int] = {}
        for drift in case_drifts.values():
            by_status[str(drift.get("status"))] = by_status.get(str(drift.get("status")), 0) + 1
        cases = html(
            "; rate-gated cases: {}",
            join(
                (html('<span data-case-status="{}">{} {}</span>', s, n, s) for s, n in sorted(by_status.items())), ", "
            ),
        )
    return html('<p id="t2i-baseline">Against baseline {}: images {}{}.</p>', repr(compared[0].name), shown, cases)


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


def _case_table(cases: dict[tuple[str, str], _Case]) -> Markup:
    """Per case: the pass rate over its seeds with its 95% interval, its gate and verdict, each judge's main
    score as a mean with its interval, and a dot per seed. A checkbox (CSS only, no script) shows only the
    unstable cases: those whose seeds disagree."""
    headers: dict[tuple[str, str], str] = {}  # (section, score name) -> its label
    for known in cases.values():
        for section, name, summary in known.rate.main_scores() if known.rate is not None else ():
            headers.setdefault((section, name), summary.label)
    order = {section: index for index, section in enumerate(ordered_sections({s for s, _ in headers}))}
    main_scores = sorted(headers, key=lambda key: (order[key[0]], key[1]))
    rows = []
    for (file, case), found in cases.items():
        rate = found.rate
        dots = join(
            html('<span class="t2i-dot t2i-bg-{}" title="seed {}: {}"></span>', outcome_group(r), r.seed, r.outcome)
            for r in found.records
        )
        if rate is None:  # every seed skipped
            cells = [
                html(
                    '<td class="num">0</td><td class="num">0</td><td>-</td><td>-</td><td></td><td>not run</td><td></td>'
                )
            ]
            means = [html("<td></td>") for _ in main_scores]
            unstable = False
        else:
            low, high = rate.interval
            gate = percent(rate.min_pass_rate) if rate.min_pass_rate is not None else "every seed"
            verdict = "passed" if found.passed else "failed"
            cells = [
                html(
                    '<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>'
                    '<td class="num">{}-{}</td><td>{}</td><td class="t2i-case-{}">{}</td>'
                    "<td>{}</td>",
                    rate.seeds_passed,
                    rate.seeds_run,
                    percent(rate.pass_rate or 0.0),
                    percent(low),
                    percent(high),
                    gate,
                    verdict,
                    verdict,
                    "unstable" if rate.unstable else "",
                )
            ]
            summaries = {(section, name): summary for section, name, summary in rate.main_scores()}
            means = [_mean_cell(summaries.get(key)) for key in main_scores]
            unstable = rate.unstable
        rows.append(
            html(
                '<tr data-key="{}::{}" class="{}"><td>{}</td><td>{}</td>{}{}<td>{}</td></tr>',
                file,
                case,
                "t2i-unstable-case" if unstable else "t2i-stable-case",
                file,
                case,
                join(cells),
                join(means),
                dots,
            )
        )
    head = join(
        html("<th>{}</th>", h)
        for h in (
            "File", "Case", "Seeds passed", "Seeds run", "Pass rate", "95% interval", "Gate", "Verdict", "Unstable",
            *(f"mean {headers[key]}" for key in main_scores), "Per seed",
        )
    )  # fmt: skip
    unstable_count = sum(case.rate is not None and case.rate.unstable for case in cases.values())
    return html(
        "<details{}><summary>Per case, across seeds ({} cases, {} unstable)</summary>"
        '<input type="checkbox" id="t2i-only-unstable"/><label for="t2i-only-unstable"> show only unstable cases '
        "(seeds disagree)</label>"
        '<table id="t2i-by-case"><thead><tr>{}</tr></thead><tbody>{}</tbody></table></details>',
        Markup(" open") if len(rows) <= OPEN_UP_TO else Markup(),
        len(rows),
        unstable_count,
        head,
        join(rows),
    )


def judge_agreement(records: Iterable[Record]) -> list[tuple[str, str, list[tuple[bool, bool]]]]:
    """For each pair of judges that both gave a verdict on some image: (section a, section b, the pairs of
    verdicts on those images), in column order."""
    pairs: dict[tuple[str, str], list[tuple[bool, bool]]] = {}
    for record in records:
        sections = ordered_sections(record.verdicts)
        for i, a in enumerate(sections):
            for b in sections[i + 1 :]:
                pairs.setdefault((a, b), []).append((record.verdicts[a].passed, record.verdicts[b].passed))
    order = {section: index for index, section in enumerate(ordered_sections({s for pair in pairs for s in pair}))}
    return [(a, b, found) for (a, b), found in sorted(pairs.items(), key=lambda p: (order[p[0][0]], order[p[0][1]]))]


def _agreement_table(records: list[Record]) -> Markup:
    """Where images were judged by more than one judge: how often each pair agrees, so that users see which judge
    to trust for which kind of prompt."""
    found = judge_agreement(records)
    if not found:
        return Markup()
    titles: dict[str, str] = {}
    for record in records:
        for section, verdict in record.verdicts.items():
            titles.setdefault(section, verdict.title)
    rows = []
    for a, b, verdicts in found:
        agree = sum(x == y for x, y in verdicts)
        both = sum(x and y for x, y in verdicts)
        neither = sum(not x and not y for x, y in verdicts)
        only_a = sum(x and not y for x, y in verdicts)
        only_b = sum(y and not x for x, y in verdicts)
        rows.append(
            html(
                '<tr data-key="{}/{}"><td>{} / {}</td><td class="num">{}</td><td class="num">{}</td>'
                '<td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>'
                '<td class="num">{}</td></tr>',
                a,
                b,
                titles[a],
                titles[b],
                len(verdicts),
                agree,
                percent(agree / len(verdicts)),
                both,
                neither,
                only_a,
                only_b,
            )
        )
    head = join(
        html("<th>{}</th>", h)
        for h in (
            "Judges A / B",
            "Images",
            "Agree",
            "Agreement",
            "Both pass",
            "Both fail",
            "Only A passes",
            "Only B passes",
        )
    )
    return html(
        "<details open><summary>Judges that saw the same images: how often they agree</summary>"
        '<table id="t2i-agreement"><thead><tr>{}</tr></thead><tbody>{}</tbody></table></details>',
        head,
        join(rows),
    )


def _human_table(records: list[Record]) -> Markup:
    """Per judge, over this run's images that people reviewed (baselines/reviewed-labels.json, same cache key):
    how often the judge's verdict now equals the human's, with the rate's 95% Wilson interval."""
    from harness.common.rate_statistics import wilson_interval
    from harness.reports.human_verdicts import human_agreement

    found = human_agreement(records)
    if not found:
        return Markup()
    rows = []
    for agreement in found:
        low, high = wilson_interval(agreement.agreed, agreement.reviewed)
        rows.append(
            html(
                '<tr data-key="{}"><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td>'
                '<td class="num">{}-{}</td><td class="num">{}</td></tr>',
                agreement.section,
                agreement.title,
                agreement.reviewed,
                agreement.agreed,
                percent(agreement.rate),
                percent(low),
                percent(high),
                agreement.overridden,
            )
        )
    head = join(
        html("<th>{}</th>", h)
        for h in (
            "Judge",
            "Reviewed images",
            "Judge agreed with humans",
            "Agreement",
            "95% interval",
            "Decided by the human verdict",
        )
    )
    return html(
        "<details open><summary>Agreement with human verdicts</summary>"
        '<table id="t2i-human-agreement"><thead><tr>{}</tr></thead><tbody>{}</tbody></table></details>',
        head,
        join(rows),
    )


def _mean_cell(summary: ScoreSummary | None) -> Markup:
    if summary is None:
        return html("<td></td>")
    interval = summary.interval
    if interval is None:
        return html('<td class="num">{:.3f}</td>', summary.mean)
    return html('<td class="num">{:.3f} [{:.3f}, {:.3f}]</td>', summary.mean, *interval)


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
