"""Two runs (or a run and a baseline) side by side: one self-contained HTML page, worst regression first."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands.compare_views import (
    DEFAULT_FULL_SIZE,
    FULL_SIZE_MODES,
    ViewOptions,
    differs_mark,
    item_views,
    parameters_table,
    verdicts_table,
)
from harness.commands.compare_views import STYLE as VIEWS_STYLE
from harness.common.atomic import atomic_write_text
from harness.common.json_input import JsonInputError
from harness.common.rate_statistics import percent
from harness.judging.formats import judge_columns, ordered_sections
from harness.reports.baseline import (
    DEFAULT_TOLERANCE,
    STATUSES,
    BaselineError,
    Drift,
    ItemScores,
    classify,
    read_baseline_dir,
    read_baseline_file,
)
from harness.reports.case_rates import CaseDrift, CaseRate, SeedResult, case_rate, compare_rates, seed_result
from harness.reports.markup import Markup, html, join
from harness.reports.records import Record, Refusal, read_results, record_part
from harness.reports.results import RESULTS_FILE

if TYPE_CHECKING:
    from harness.reports.run_images import RunImage

DEFAULT_IMAGE_PX = 256

Key = tuple[str, str, int]  # (case file, case id, seed)


class CompareError(Exception):
    """An input that is neither a run nor a baseline, or an output that cannot be written."""


@dataclass
class SideItem:
    file: str
    case: str
    seed: int
    scores: ItemScores | None
    record: Record | None = None  # the results.json record (runs only)
    image: str | None = None  # the embedded JPEG thumbnail (a data URI), made from the checked PNG
    image_refused: str | None = None  # why the record's image is not shown
    source: RunImage | None = None  # the checked PNG and its pixels: the diff views and the full-size panel
    thumb_size: tuple[int, int] | None = None  # the thumbnail's width and height


@dataclass
class Side:
    """One input: a run (report dir with results.json and images) or a baseline (scores only)."""

    path: Path
    kind: str  # "run" or "baseline"
    items: dict[Key, SideItem]
    environment: dict[str, str] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)  # records left out, images not shown
    gates: dict[tuple[str, str], float | None] = field(default_factory=dict)  # a baseline's min_pass_rate by case

    @property
    def scored(self) -> list[ItemScores]:
        return [item.scores for item in self.items.values() if item.scores is not None]

    def case_rates(self) -> dict[tuple[str, str], CaseRate]:
        """Each case's rate over its seeds on this side: a run's records, or a baseline's entries."""
        seeds: dict[tuple[str, str], list[SeedResult]] = {}
        gates: dict[tuple[str, str], float | None] = {}
        for item in self.items.values():
            key = (item.file, item.case)
            if item.record is not None:
                result = seed_result(item.record)
                gates[key] = item.record.min_pass_rate
            else:
                result = (
                    None if item.scores is None else SeedResult(item.seed, item.scores.passed, item.scores.verdicts)
                )
            if result is not None:
                seeds.setdefault(key, []).append(result)
        return {key: case_rate(*key, found, gates.get(key, self.gates.get(key))) for key, found in seeds.items()}


def load_side(path: Path, image_px: int = DEFAULT_IMAGE_PX) -> Side:
    """A report dir (or its results.json), a baselines/NAME dir, or one baseline file."""
    if path.is_dir() and (path / RESULTS_FILE).exists():
        return _load_run(path / RESULTS_FILE, image_px)
    if path.name == RESULTS_FILE and path.exists():
        return _load_run(path, image_px)
    try:
        if path.is_dir():
            files = read_baseline_dir(path)
            if not files:
                raise CompareError(
                    f"{path}: neither a run (no {RESULTS_FILE}) nor a baseline (no baseline .json files in it)"
                )
        elif path.is_file():
            single = read_baseline_file(path)
            files = {single.file: single}
        else:
            raise CompareError(f"{path}: no such file or directory")
    except BaselineError as exc:
        raise CompareError(f"{path}: neither a run (no {RESULTS_FILE} in it) nor a baseline: {exc}") from None
    items: dict[Key, SideItem] = {}
    environment: dict[str, str] = {}
    gates: dict[tuple[str, str], float | None] = {}
    for file, baseline in sorted(files.items()):
        environment = environment or baseline.environment
        for scores in baseline.entries.values():
            items[(file, scores.case, scores.seed)] = SideItem(file, scores.case, scores.seed, scores)
        gates.update({(file, case): rate.min_pass_rate for case, rate in baseline.cases.items()})
    return Side(path, "baseline", items, environment, gates=gates)


def _load_run(results: Path, image_px: int) -> Side:
    from harness.reports.report_rows import image_problem
    from harness.reports.run_images import ImageRefused, run_image
    from harness.reports.thumbnails import fitted, jpeg_data_uri

    try:
        run = read_results(results)
    except JsonInputError as exc:
        raise CompareError(str(exc)) from None
    items: dict[Key, SideItem] = {}
    first: dict[Key, int] = {}
    refusals = list(run.refusals)
    for index, record in run.records:
        part = record_part(index, record.raw)
        if record.key in first:
            refusals.append(
                Refusal(
                    str(results),
                    part,
                    f"the same case file, case and seed as record {first[record.key]}",
                    "only the first of them is compared",
                )
            )
            continue
        first[record.key] = index
        item = SideItem(record.file, record.case, record.seed, record.scores(), record)
        if record.image is not None:
            try:
                image = run_image(run.run_dir, record.image)
            except ImageRefused as exc:
                item.image_refused = image_problem(record.image, exc)
                shown_without = "the record is shown without its image"
                refusals.append(Refusal(str(results), part, item.image_refused, shown_without))
            else:
                thumbnail = fitted(image.pixels, image_px)
                item.image, item.thumb_size, item.source = jpeg_data_uri(thumbnail, 85), thumbnail.size, image
        items[record.key] = item
    return Side(results.parent, "run", items, run.environment, refusals)


@dataclass
class Row:
    key: Key
    a: SideItem | None
    b: SideItem | None
    drift: Drift | None  # None unless both sides were scored

    @property
    def status(self) -> str:
        return _row_status(self.a, self.b, self.drift)


def _row_status(a: object, b: object, drift: Drift | CaseDrift | None) -> str:
    """An item's or a case's status on the page: its drift's, or why it has none."""
    if a is None:
        return "only in B"
    if b is None:
        return "only in A"
    if drift is None:
        return "not scored"
    if drift.status == "new":
        return "not comparable"  # the checks changed (CLIP's labels, say)
    return drift.status


@dataclass(frozen=True)
class CaseRow:
    """A case's rate on both sides, and how it moved (None unless both ran it)."""

    key: tuple[str, str]
    a: CaseRate | None
    b: CaseRate | None
    drift: CaseDrift | None

    @property
    def status(self) -> str:
        return _row_status(self.a, self.b, self.drift)


@dataclass
class Comparison:
    a: Side
    b: Side
    tolerance: float
    rows: list[Row]
    cases: list[CaseRow] = field(default_factory=list)  # worst first

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def refusals(self) -> list[Refusal]:
        return [*self.a.refusals, *self.b.refusals]


# A row's status: a baseline comparison's (harness.reports.baseline.STATUSES; "new" there means the checks changed,
# so the scores do not compare), or why the row has no comparison.
ROW_STATUSES = (*(s for s in STATUSES if s != "new"), "not comparable", "not scored", "only in A", "only in B")


def compare(a: Side, b: Side, tolerance: float = DEFAULT_TOLERANCE) -> Comparison:
    rows = []
    for key in sorted(set(a.items) | set(b.items)):
        item_a, item_b = a.items.get(key), b.items.get(key)
        drift = None
        if item_a is not None and item_b is not None and item_a.scores is not None and item_b.scores is not None:
            drift = classify(item_a.scores, item_b.scores, tolerance)
        rows.append(Row(key, item_a, item_b, drift))

    def order(row: Row) -> tuple[Any, ...]:
        # Compared items worst first; then those that cannot be compared, by status and key.
        if row.drift is not None and row.drift.status != "new":
            return (0, *row.drift.severity, row.key)
        return (1, ROW_STATUSES.index(row.status), 0.0, row.key)

    rows.sort(key=order)
    return Comparison(a, b, tolerance, rows, compare_cases(a, b, tolerance))


def compare_cases(a: Side, b: Side, tolerance: float) -> list[CaseRow]:
    """Every case's rate on both sides, worst first: the smallest p-value of a drop, then the largest fall."""
    rates_a, rates_b = a.case_rates(), b.case_rates()
    rows = []
    for key in sorted(set(rates_a) | set(rates_b)):
        rate_a, rate_b = rates_a.get(key), rates_b.get(key)
        drift = compare_rates(rate_a, rate_b, tolerance) if rate_a is not None and rate_b is not None else None
        rows.append(CaseRow(key, rate_a, rate_b, drift))

    def order(row: CaseRow) -> tuple[Any, ...]:
        if row.drift is not None and row.drift.status != "new":
            return (0, *row.drift.severity, row.key)
        return (1, 1.0, 0.0, row.key)

    return sorted(rows, key=order)


# ---------------------------------------------------------------------------------------------
# The page.

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 14px; margin: 1em 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.changed { background: #fff6d5; }
#items > tbody > tr.regressed > td:first-child { border-left: 6px solid #c62828; }
#items > tbody > tr.improved > td:first-child { border-left: 6px solid #2e7d32; }
#items > tbody > tr.unchanged > td:first-child { border-left: 6px solid #9e9e9e; }
.neg { color: #c62828; font-weight: bold; } .pos { color: #2e7d32; }
.prompt { max-width: 22em; }
#items td table td { border: none; padding: 0 4px; font-size: 12px; }
tr.t2i-intended td { font-weight: bold; }
img { display: block; max-width: 256px; }
#t2i-refused { border: 2px solid #c62828; padding: 0 1em; margin: 1em 0; } .t2i-refused { color: #c62828; }
"""


# The page loads nothing and runs nothing, whatever an input holds: no script, no request; images are data URIs.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def render(comparison: Comparison, image_px: int = DEFAULT_IMAGE_PX, full_size: str = DEFAULT_FULL_SIZE) -> str:
    """The page; ``image_px`` the thumbnails' size, ``full_size`` how the full-size panel embeds images."""
    from harness.reports.image_diff import ramp_css_gradient

    a, b = comparison.a, comparison.b
    page = html(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        '<meta http-equiv="Content-Security-Policy" content="{}"/><title>t2i-harness comparison</title>'
        "<style>{}{}.t2i-ramp {{ background: {}; }}</style></head><body>\n<h1>t2i-harness comparison</h1>\n"
        "<p>A ({}): <code>{}</code><br/>B ({}): <code>{}</code></p>\n{}\n{}\n{}\n{}\n{}\n</body></html>",
        _POLICY,
        Markup(_STYLE),
        Markup(VIEWS_STYLE),
        ramp_css_gradient(),
        a.kind,
        str(a.path),
        b.kind,
        str(b.path),
        _refusals(comparison),
        _environment(a, b),
        _totals(comparison),
        _cases(comparison),
        _items(comparison, ViewOptions(image_px, full_size)),
    )
    return str(page)


def _refusals(comparison: Comparison) -> Markup:
    from harness.reports.report_rows import refusals_html

    return refusals_html(comparison.refusals)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    value = round(value, 4) + 0.0  # no "-0.0000"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _totals(comparison: Comparison) -> Markup:
    a, b = comparison.a.scored, comparison.b.scored
    pass_a, pass_b = sum(s.passed for s in a), sum(s.passed for s in b)
    both = [row.drift for row in comparison.rows if row.status in ("regressed", "improved", "unchanged")]
    rows = [
        ("scored items", str(len(a)), str(len(b)), f"{len(b) - len(a):+d}", "items"),
        ("passed (every judge's verdict)", str(pass_a), str(pass_b), f"{pass_b - pass_a:+d}", "passed"),
    ]
    # The mean of each gated score; the delta of the means would mix in items only one side has, so the
    # last column is the mean of the deltas over items in both.
    for section, name, label in _gated_scores([*a, *b]):
        mean_a, mean_b = _mean(_values(a, section, name)), _mean(_values(b, section, name))
        deltas = [d.delta(section, name) for d in both if d is not None]
        mean_delta = _mean([x for x in deltas if x is not None])
        ident = f"mean-{section}-{name}"
        rows.append((f"mean {label}", _fmt(mean_a), _fmt(mean_b), _fmt(mean_delta, True), ident))
    body = join(
        html(
            '<tr id="total-{}"><th>{}</th><td class="num a">{}</td><td class="num b">{}</td>'
            '<td class="num delta">{}</td></tr>',
            ident,
            what,
            va,
            vb,
            d,
        )
        for what, va, vb, d, ident in rows
    )
    counts = join(
        html('<li><span class="count" data-status="{}">{}</span> {}</li>', status, comparison.count(status), status)
        for status in ROW_STATUSES
        if comparison.count(status) or status in ("regressed", "improved", "unchanged")
    )
    return html(
        '<h2>Totals</h2><table id="totals"><thead><tr><th></th><th>A</th><th>B</th>'
        "<th>B - A (scores: mean change over items in both)</th></tr></thead>"
        "<tbody>{}</tbody></table>"
        "<p>Items in both runs, with tolerance {:g} on the gated scores "
        '(a verdict going from pass to fail is always a regression):</p><ul id="changes">{}</ul>',
        body,
        comparison.tolerance,
        counts,
    )


def _gated_scores(items: list[ItemScores]) -> list[tuple[str, str, str]]:
    """(section, score name, its phrase) of every gated score on either side, in column order."""
    found: dict[tuple[str, str], str] = {}
    for item in items:
        for section in ordered_sections(item.verdicts):
            for score in item.verdicts[section].scores:
                if score.gated:
                    found.setdefault((section, score.name), score.phrase)
    order = ordered_sections({section for section, _ in found})
    return sorted(((s, n, p) for (s, n), p in found.items()), key=lambda t: order.index(t[0]))


def _values(items: list[ItemScores], section: str, name: str) -> list[float]:
    values = []
    for item in items:
        verdict = item.verdicts.get(section)
        score = verdict.score(name) if verdict is not None else None
        if score is not None:
            values.append(score.value)
    return values


def _environment(a: Side, b: Side) -> Markup:
    keys = sorted(set(a.environment) | set(b.environment))
    if not keys:
        return Markup()
    rows = []
    for key in keys:
        va, vb = a.environment.get(key, "-"), b.environment.get(key, "-")
        changed = "changed t2i-differs" if va != vb else ""
        rows.append(
            html(
                '<tr class="{}"><th>{}</th><td>{}</td><td>{}</td>{}</tr>', changed, key, va, vb, differs_mark(va != vb)
            )
        )
    return html(
        '<h2>Environment and models</h2><table id="environment"><thead><tr><th></th><th>A</th><th>B</th><th></th>'
        "</tr></thead><tbody>{}</tbody></table>",
        join(rows),
    )


def _verdict(item: SideItem | None, section: str) -> Markup:
    from harness.reports.report_rows import verdict_table

    if item is None or item.scores is None:
        return Markup()
    return verdict_table(section, item.scores.verdicts.get(section))


def _delta(value: float | None, name: str, label: str, tolerance: float) -> Markup:
    css = "" if value is None else ("neg" if value < -tolerance else "pos" if value > tolerance else "")
    return html(
        '<div class="delta {}" data-name="{}" data-value="{}">{}: {}</div>',
        css,
        name,
        "" if value is None else repr(value),
        label,
        _fmt(value, True),
    )


def _judge_columns(comparison: Comparison) -> list[tuple[str, str]]:
    """(section, title) of every judge either side has a verdict of."""
    return judge_columns(
        item.scores.verdicts
        for side in (comparison.a, comparison.b)
        for item in side.items.values()
        if item.scores is not None
    )


def _items(comparison: Comparison, options: ViewOptions) -> Markup:
    judges = _judge_columns(comparison)
    sections = [section for section, _ in judges]
    kinds = (comparison.a.kind, comparison.b.kind)
    rows = []
    for index, row in enumerate(comparison.rows):
        file, case, seed = row.key
        some = row.b or row.a
        assert some is not None
        prompt = some.record.prompt if some.record is not None else ""
        d = row.drift
        deltas = Markup()
        if d is not None and d.status != "new":
            deltas = join(
                [
                    *(
                        _delta(x.delta, f"{x.section}.{x.after.name}", x.after.label, comparison.tolerance)
                        for x in d.deltas
                    ),
                    html('<div class="neg">flipped: {}</div>', ", ".join(d.flips)) if d.flips else "",
                ]
            )
        judge_cells = join(
            html("<td>{}</td><td>{}</td>", _verdict(row.a, section), _verdict(row.b, section)) for section in sections
        )
        views = item_views(index, row.a, row.b, kinds, options)
        rows.append(
            html(
                '<tr class="{}" data-file="{}" data-case="{}" data-seed="{}" data-status="{}" id="item-{}">'
                '<td><strong>{}</strong><br/>seed {}<br/><small>{}</small><div class="prompt">{}</div>'
                '<div class="status">{}</div>{}</td>'
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
                row.status.replace(" ", "-"),
                file,
                case,
                seed,
                row.status,
                index,
                case,
                seed,
                file,
                prompt,
                row.status,
                deltas,
                views.image_a,
                views.image_b,
                views.views,
                parameters_table(row.a, row.b, kinds),
                verdicts_table(row.a, row.b),
                judge_cells,
            )
        )
    titles = [title for _, title in judges]
    head = join(
        html("<th>{}</th>", h)
        for h in (
            "Case, seed, deltas (B - A)",
            "Image A",
            "Image B",
            "A over B, difference",
            "Generation parameters",
            "Verdicts",
            *(f"{t} {side}" for t in titles for side in "AB"),
        )
    )
    return html(
        '<h2>Items, worst regression first</h2><table id="items"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        head,
        join(rows),
    )


def write_comparison(
    run_a: Path,
    run_b: Path,
    output: Path,
    tolerance: float = DEFAULT_TOLERANCE,
    image_px: int = DEFAULT_IMAGE_PX,
    full_size: str = DEFAULT_FULL_SIZE,
) -> Comparison:
    """Compare two inputs and write the page; the returned comparison's ``refusals`` say what was left out."""
    if not 0 <= tolerance <= 1:  # NaN fails this too
        raise CompareError(f"--tolerance must be a number in [0, 1], got {tolerance}")
    if full_size not in FULL_SIZE_MODES:
        raise CompareError(f"--full-size must be one of {', '.join(FULL_SIZE_MODES)}, got {full_size!r}")
    if output.is_dir():
        raise CompareError(f"-o {output}: is a directory; name the page to write, e.g. {output / 'compare.html'}")
    comparison = compare(load_side(run_a, image_px), load_side(run_b, image_px), tolerance)
    try:
        atomic_write_text(output, render(comparison, image_px, full_size))
    except OSError as exc:
        raise CompareError(f"-o {output}: cannot write the page ({exc.strerror or exc})") from None
    return comparison


def _cases(comparison: Comparison) -> Markup:
    """Per case: both sides' pass rates with their 95% intervals, the one-sided Fisher p of a drop, each judge's
    main score as a mean with its interval, worst first."""
    if not comparison.cases:
        return Markup()
    main = []
    for row in comparison.cases:
        for rate in (row.a, row.b):
            for section, name, summary in rate.main_scores() if rate is not None else []:
                if (section, name, summary.label) not in main:
                    main.append((section, name, summary.label))
    order = ordered_sections({section for section, _, _ in main})
    main.sort(key=lambda m: (order.index(m[0]), m[1]))
    rows = []
    for row in comparison.cases:
        change = Markup()
        if row.a is not None and row.b is not None and row.a.pass_rate is not None and row.b.pass_rate is not None:
            delta = (row.b.pass_rate - row.a.pass_rate) * 100
            change = html('<span class="{}">{:+.1f} pts</span>', "neg" if delta < 0 else "pos", delta)
        p_value = row.drift.drop_p if row.drift is not None else None
        means = join(
            html("<td>{}</td><td>{}</td>", _mean_with_interval(row.a, s, n), _mean_with_interval(row.b, s, n))
            for s, n, _ in main
        )
        rows.append(
            html(
                '<tr class="case-{}" data-case-file="{}" data-case-id="{}" data-case-status="{}"><td>{}</td>'
                '<td><strong>{}</strong></td><td class="num a">{}</td><td class="num b">{}</td><td class="num">{}</td>'
                '<td class="num">{}</td><td>{}</td>{}</tr>',
                row.status.replace(" ", "-"),
                row.key[0],
                row.key[1],
                row.status,
                row.key[0],
                row.key[1],
                _rate(row.a),
                _rate(row.b),
                change,
                "-" if p_value is None else f"{p_value:.4f}",
                row.status,
                means,
            )
        )
    head = join(
        html("<th>{}</th>", h)
        for h in (
            "File", "Case", "Pass rate A [95% interval]", "Pass rate B [95% interval]", "B - A",
            "Fisher p (drop)", "Status", *(f"mean {label} {side}" for _, _, label in main for side in "AB"),
        )
    )  # fmt: skip
    return html(
        "<h2>Cases, across seeds, worst first</h2><p>A case's rate drop counts as a regression when one-sided "
        "Fisher's exact p &lt; 0.05 (more than chance explains), or when a gated score's mean fell by more than "
        'the tolerance even at the top of its 95% interval.</p><table id="cases"><thead><tr>{}</tr></thead>'
        "<tbody>{}</tbody></table>",
        head,
        join(rows),
    )


def _rate(rate: CaseRate | None) -> Markup:
    if rate is None or rate.pass_rate is None:
        return html("-")
    low, high = rate.interval
    gate = html("<br/><small>needs {}</small>", percent(rate.min_pass_rate)) if rate.min_pass_rate else Markup()
    return html(
        "{} of {} = {} [{}, {}]{}",
        rate.seeds_passed,
        rate.seeds_run,
        percent(rate.pass_rate),
        percent(low),
        percent(high),
        gate,
    )


def _mean_with_interval(rate: CaseRate | None, section: str, name: str) -> str:
    summary = rate.scores.get(section, {}).get(name) if rate is not None else None
    if summary is None:
        return "-"
    interval = summary.interval
    return f"{summary.mean:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")
