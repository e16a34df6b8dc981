"""Two runs (or a run and a baseline) side by side: one self-contained HTML page, worst regression first."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_text
from harness.baseline import (
    DEFAULT_TOLERANCE,
    BaselineError,
    Drift,
    Scores,
    classify,
    read_baseline_dir,
    read_baseline_file,
)
from harness.results import RESULTS_FILE

DEFAULT_IMAGE_PX = 256

Key = tuple[str, str, int]  # (case file, case id, seed)


class CompareError(Exception):
    """An input that is neither a run nor a baseline."""


@dataclass
class SideItem:
    file: str
    case: str
    seed: int
    scores: Scores | None
    record: dict[str, Any] | None = None  # the results.json record (runs only)
    image: Path | None = None


@dataclass
class Side:
    """One input: a run (report dir with results.json and images) or a baseline (scores only)."""

    path: Path
    kind: str  # "run" or "baseline"
    items: dict[Key, SideItem]
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def scored(self) -> list[Scores]:
        return [item.scores for item in self.items.values() if item.scores is not None]


def load_side(path: Path) -> Side:
    """A report dir (or its results.json), a baselines/NAME dir, or one baseline file."""
    if path.is_dir() and (path / RESULTS_FILE).is_file():
        return _load_run(path / RESULTS_FILE)
    if path.is_file() and path.name == RESULTS_FILE:
        return _load_run(path)
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
    for file, baseline in sorted(files.items()):
        environment = environment or baseline.environment
        for scores in baseline.entries.values():
            items[(file, scores.case, scores.seed)] = SideItem(file, scores.case, scores.seed, scores)
    return Side(path, "baseline", items, environment)


def _load_run(results: Path) -> Side:
    try:
        document = json.loads(results.read_text(encoding="utf-8"))
        records = document["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompareError(f"{results}: not a readable results.json ({type(exc).__name__}: {exc})") from None
    items: dict[Key, SideItem] = {}
    for record in records:
        key = (str(record["file"]), str(record["case"]), int(record["seed"]))
        image = results.parent / record["image"] if record.get("image") else None
        items[key] = SideItem(
            key[0], key[1], key[2], Scores.from_record(record), record, image if image and image.is_file() else None
        )
    return Side(results.parent, "run", items, dict(document.get("environment") or {}))


@dataclass
class Row:
    key: Key
    a: SideItem | None
    b: SideItem | None
    drift: Drift | None  # None unless both sides were scored

    @property
    def status(self) -> str:
        if self.a is None:
            return "only in B"
        if self.b is None:
            return "only in A"
        if self.drift is None:
            return "not scored"
        if self.drift.status == "new":
            return "not comparable"  # the labels changed
        return self.drift.status


@dataclass
class Comparison:
    a: Side
    b: Side
    tolerance: float
    rows: list[Row]

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)


ROW_STATUSES = ("regressed", "improved", "unchanged", "not comparable", "not scored", "only in A", "only in B")


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
    return Comparison(a, b, tolerance, rows)


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
table.t2i-clip td, table.t2i-resnet td { border: none; padding: 0 4px; font-size: 12px; }
tr.t2i-intended td { font-weight: bold; }
img { display: block; max-width: 256px; }
"""


def render(comparison: Comparison, image_px: int = DEFAULT_IMAGE_PX) -> str:
    a, b = comparison.a, comparison.b
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/><title>t2i-harness comparison</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>t2i-harness comparison</h1>",
        f"<p>A ({a.kind}): <code>{escape(str(a.path))}</code><br/>B ({b.kind}): <code>{escape(str(b.path))}</code></p>",
        _totals(comparison),
        _environment(a, b),
        _items(comparison, image_px),
        "</body></html>",
    ]
    return "\n".join(parts)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    value = round(value, 4) + 0.0  # no "-0.0000"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _totals(comparison: Comparison) -> str:
    a, b = comparison.a.scored, comparison.b.scored
    pass_a, pass_b = sum(s.passed for s in a), sum(s.passed for s in b)
    mean_a, mean_b = _mean([s.clip_prob for s in a]), _mean([s.clip_prob for s in b])
    both = [row.drift for row in comparison.rows if row.status in ("regressed", "improved", "unchanged")]
    mean_delta = _mean([d.prob_delta for d in both if d is not None and d.prob_delta is not None])
    rows = [
        ("scored items", str(len(a)), str(len(b)), f"{len(b) - len(a):+d}", "items"),
        ("passed (CLIP and ResNet verdicts)", str(pass_a), str(pass_b), f"{pass_b - pass_a:+d}", "passed"),
        ("mean probability of the intended label", _fmt(mean_a), _fmt(mean_b), _fmt(mean_delta, True), "mean-prob"),
        # The delta of the means would mix in items only one side has; the mean of the deltas does not.
    ]
    body = "".join(
        f'<tr id="total-{ident}"><th>{what}</th><td class="num a">{va}</td><td class="num b">{vb}</td>'
        f'<td class="num delta">{d}</td></tr>'
        for what, va, vb, d, ident in rows
    )
    counts = "".join(
        f'<li><span class="count" data-status="{status}">{comparison.count(status)}</span> {status}</li>'
        for status in ROW_STATUSES
        if comparison.count(status) or status in ("regressed", "improved", "unchanged")
    )
    return (
        '<h2>Totals</h2><table id="totals"><thead><tr><th></th><th>A</th><th>B</th>'
        "<th>B - A (probability: mean change over items in both)</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
        f"<p>Items in both runs, with tolerance {comparison.tolerance:g} on the intended label's probability "
        f'and margin (a verdict going from pass to fail is always a regression):</p><ul id="changes">{counts}</ul>'
    )


def _environment(a: Side, b: Side) -> str:
    keys = sorted(set(a.environment) | set(b.environment))
    if not keys:
        return ""
    rows = []
    for key in keys:
        va, vb = a.environment.get(key, "-"), b.environment.get(key, "-")
        changed = ' class="changed"' if va != vb else ""
        rows.append(f"<tr{changed}><th>{escape(key)}</th><td>{escape(str(va))}</td><td>{escape(str(vb))}</td></tr>")
    return (
        '<h2>Environment</h2><table id="environment"><thead><tr><th></th><th>A</th><th>B</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _items(comparison: Comparison, image_px: int) -> str:
    from harness.report import clip_table, resnet_table
    from harness.thumbnails import thumbnail_data_uri

    def image(item: SideItem | None, side: Side) -> str:
        if item is None:
            return "<em>not in this run</em>"
        if item.image is not None:
            uri = thumbnail_data_uri(item.image, image_px, quality=85)
            return f'<img src="{uri}" alt="{escape(item.case)} seed {item.seed}"/>'
        if side.kind == "baseline":
            cache = (
                f"<br/>cache key <code>{escape(item.scores.cache_key)}</code>"
                if item.scores and item.scores.cache_key
                else ""
            )
            return f"<em>baseline: scores only</em>{cache}"
        fault = (item.record or {}).get("fault")
        return f"<em>{escape(fault or 'no image (' + str((item.record or {}).get('outcome')) + ')')}</em>"

    def clip(item: SideItem | None) -> str:
        if item is None:
            return ""
        if item.record is not None:
            return clip_table(item.record.get("clip"))
        s = item.scores
        assert s is not None
        return (
            f'<table class="t2i-clip"><tr class="t2i-intended"><td>{s.clip_prob:.4f}</td><td>intended</td>'
            f"<td>{escape(s.labels[0])}</td></tr><tr><td>{s.clip_margin:+.4f}</td><td>margin</td><td></td></tr>"
            f"<tr><td>{'pass' if s.clip_passed else 'fail'}</td><td>verdict</td><td></td></tr></table>"
        )

    def resnet(item: SideItem | None) -> str:
        if item is None:
            return ""
        if item.record is not None:
            return resnet_table(item.record.get("resnet"))
        s = item.scores
        if s is None or s.resnet_passed is None:
            return ""
        return (
            f'<table class="t2i-resnet"><tr class="t2i-intended"><td>{_fmt(s.resnet_prob)}</td>'
            f"<td>{escape(str(s.resnet_class))}</td></tr><tr><td>{'pass' if s.resnet_passed else 'fail'}</td>"
            "<td>verdict</td></tr></table>"
        )

    def delta(value: float | None, name: str) -> str:
        css = (
            ""
            if value is None
            else (" neg" if value < -comparison.tolerance else " pos" if value > comparison.tolerance else "")
        )
        data = "" if value is None else repr(value)
        return f'<div class="delta{css}" data-name="{name}" data-value="{data}">{name}: {_fmt(value, True)}</div>'

    rows = []
    for row in comparison.rows:
        file, case, seed = row.key
        some = row.b or row.a
        assert some is not None
        prompt = (some.record or {}).get("prompt")
        d = row.drift
        flips = f'<div class="neg">flipped: {escape(", ".join(d.flips))}</div>' if d is not None and d.flips else ""
        deltas = (
            delta(d.prob_delta, "probability")
            + delta(d.margin_delta, "margin")
            + (delta(d.resnet_delta, "ResNet") if d.resnet_delta is not None else "")
            + flips
            if d is not None and d.status != "new"
            else ""
        )
        css = row.status.replace(" ", "-")
        rows.append(
            f'<tr class="{css}" data-file="{escape(file)}" data-case="{escape(case)}" data-seed="{seed}" '
            f'data-status="{escape(row.status)}">'
            f"<td><strong>{escape(case)}</strong><br/>seed {seed}<br/><small>{escape(file)}</small>"
            f'<div class="prompt">{escape(prompt or "")}</div><div class="status">{row.status}</div>{deltas}</td>'
            f"<td>{image(row.a, comparison.a)}</td><td>{image(row.b, comparison.b)}</td>"
            f"<td>{clip(row.a)}</td><td>{clip(row.b)}</td><td>{resnet(row.a)}</td><td>{resnet(row.b)}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "Case, seed, deltas (B - A)",
            "Image A",
            "Image B",
            "CLIP A",
            "CLIP B",
            "ResNet top 5 A",
            "ResNet top 5 B",
        )
    )
    return (
        "<h2>Items, worst regression first</h2>"
        f'<table id="items"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def write_comparison(
    run_a: Path, run_b: Path, output: Path, tolerance: float = DEFAULT_TOLERANCE, image_px: int = DEFAULT_IMAGE_PX
) -> Comparison:
    if not 0 <= tolerance <= 1:  # NaN fails this too
        raise CompareError(f"--tolerance must be a number in [0, 1], got {tolerance}")
    comparison = compare(load_side(run_a), load_side(run_b), tolerance)
    atomic_write_text(output, render(comparison, image_px))
    return comparison
