"""The review page: one section per review unit, built with harness.reports.markup (every value escaped).

The page's own script (static/review.js) only moves between units, filters them, posts decisions and swaps in
the section the server renders again after each one; it never builds markup from data.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

from harness.common.rate_statistics import percent
from harness.judging.judge import Verdict
from harness.reports.markup import Markup, html, join
from harness.review.review_state import ReviewItem, ReviewState, ReviewUnit, unit_sections

# What the filter offers, and which statuses each shows (a unit's status is its baseline comparison's).
FILTERS = {
    "changed": ("regressed", "improved", "nondeterministic", "new"),
    "regressed": ("regressed",),
    "improved": ("improved",),
    "new": ("new",),
    "nondeterministic": ("nondeterministic",),
    "unchanged": ("unchanged",),
    "all": (),
}
KEYS = "j / ↓ next · k / ↑ previous · a accept · r reject · 1-9 judge N is wrong · d next diff view · f full size"


def page(state: ReviewState, token: str) -> Markup:
    statuses = Counter(unit.status for unit in state.units)
    counts = join((html("{} {}", count, status) for status, count in sorted(statuses.items())), ", ")
    undecided = sum(1 for unit in state.units if unit.decision is None)
    failing = sum(1 for unit in state.units if unit.failed)
    filters = join(
        html(
            '<label><input type="radio" name="filter" value="{}"{}> {}</label>',
            name,
            Markup(" checked") if name == "changed" else Markup(),
            name,
        )
        for name in FILTERS
    )
    return html(
        """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="t2i-token" content="{token}">
<title>Review: {run}</title>
<link rel="stylesheet" href="/static/review.css?token={token}">
<script src="/static/review.js?token={token}" defer></script>
</head><body>
<header>
<h1>Review of <code>{run}</code> against baseline <code>{name}</code></h1>
<p id="counts">{units} review units ({counts}); {failing} failing; {undecided} undecided.
Decisions write <code>{baseline_dir}</code> (Accept) and <code>{labels}</code> (every decision).</p>
<form id="filters">Show: {filters}
<label><input type="checkbox" name="failing"> failing only</label>
<label><input type="checkbox" name="undecided"> undecided only</label>
<button type="button" id="accept-shown">Accept all shown</button></form>
<p class="keys">Keys: {keys}</p>
<p id="message" role="status" aria-live="polite"></p>
</header>
<main id="units">
{sections}
</main>
</body></html>
""",
        token=token,
        run=str(state.run.run_dir),
        name=state.name,
        units=len(state.units),
        counts=counts or "none",
        failing=failing,
        undecided=undecided,
        baseline_dir=f"baselines/{state.name}/",
        labels=str(state.labels_file.relative_to(state.root)) if state.labels_file.is_relative_to(state.root) else "",
        filters=filters,
        keys=KEYS,
        sections=join((unit_section(state, unit, token) for unit in state.units), "\n"),
    )


def unit_section(state: ReviewState, unit: ReviewUnit, token: str) -> Markup:
    first = unit.items[0].record
    decision = {"accept": "accepted", "reject": "rejected", None: "undecided"}[unit.decision]
    rate = Markup()
    if unit.gated and unit.rate is not None:
        before = unit.case_drift.before if unit.case_drift is not None else None
        rate = html(
            '<p class="rate">{}; gate {}. Baseline: {}</p>',
            unit.rate.describe(),
            percent(first.min_pass_rate or 0.0),
            "none" if before is None else before.describe(),
        )
    sections = unit_sections(unit)
    return html(
        """<section class="unit status-{status_class}" data-uid="{uid}" data-status="{status}" data-failed="{failed}"
 data-decision="{decision_key}" tabindex="-1">
<h2><span class="badge">{status}</span> {case}{seeds} <span class="decision">{decision}</span>{failing}</h2>
<p class="where"><code>{file}:{line}</code> · <code>{uid}</code></p>
{params}{rate}
{items}
<p class="actions"><button type="button" class="accept">Accept</button>
<button type="button" class="reject">Reject</button>
<span class="what">Accept: {accept_what}. Reject: a real regression (the baseline keeps its entry).</span></p>
</section>""",
        status_class=unit.status.replace(" ", "-"),
        status=unit.status,
        uid=unit.uid,
        failed="1" if unit.failed else "0",
        decision_key=unit.decision or "",
        case=unit.case,
        seeds=(f" · {len(unit.items)} seeds" if unit.gated else f" · seed {first.seed}"),
        decision=decision,
        failing=Markup(' <span class="failing">failing</span>') if unit.failed else Markup(),
        file=first.file,
        line=first.line,
        params=_params(first),
        rate=rate,
        items=join((_item(state, unit, item, sections, token) for item in unit.items), "\n"),
        accept_what=(
            "every seed's scores and the rate become the baseline's"
            if unit.gated
            else "these scores become the baseline entry"
        ),
    )


def _params(record: object) -> Markup:
    from harness.reports.records import Record

    assert isinstance(record, Record)
    size = f"{record.width}x{record.height}" if record.width and record.height else "pipeline default"
    return html(
        """<dl class="params"><dt>prompt</dt><dd>{}</dd><dt>negative prompt</dt><dd>{}</dd>
<dt>steps</dt><dd>{}</dd><dt>guidance</dt><dd>{:g}</dd><dt>size</dt><dd>{}</dd></dl>""",
        record.prompt,
        record.negative_prompt if record.negative_prompt is not None else "(none)",
        record.steps,
        record.guidance_scale,
        size,
    )


def _url(path: str, token: str) -> str:
    return f"{quote(path, safe='/')}?token={quote(token)}"


def _item(state: ReviewState, unit: ReviewUnit, item: ReviewItem, sections: list[str], token: str) -> Markup:
    record = item.record
    run_image = (
        html(
            '<figure class="now"><figcaption>this run</figcaption><a href="{0}" target="_blank" class="full">'
            '<img src="{0}" alt="this run\'s image"></a></figure>',
            _url(f"/run/{record.image}", token),
        )
        if record.image
        else html(
            '<figure class="now missing"><figcaption>this run</figcaption><p>{}</p></figure>',
            record.fault or "no image",
        )
    )
    baseline_image = _baseline_figure(state, item, token)
    diff = Markup()
    if record.image and item.before_image is not None:
        diff = html(
            """<div class="diff mode-side" data-index="{index}">
<p class="views"><button type="button" data-mode="side">side by side</button>
<button type="button" data-mode="overlay">overlay</button>
<button type="button" data-mode="heat">difference</button></p>
<div class="overlay"><img src="{base}" alt="baseline"><img class="top" src="{now}" alt="this run">
<input type="range" min="0" max="100" value="50" aria-label="overlay: share of this run's image shown"></div>
<figure class="heat"><img src="{heat}" alt="difference heatmap"><figcaption>per-pixel largest channel difference,
black = identical, scaled so the largest difference is full scale: <span class="stats" data-src="{stats}"></span>
</figcaption></figure>
</div>""",
            index=item.index,
            base=_url(f"/cached/{item.before_image}.png", token),
            now=_url(f"/run/{record.image}", token),
            heat=_url(f"/diff/{item.index}.png", token),
            stats=_url(f"/diff/{item.index}.json", token),
        )
    judges = join(
        (_judge_row(item, section, position) for position, section in enumerate(sections, start=1)),
        "\n",
    )
    return html(
        """<div class="item" data-item="{id}">
<h3>seed {seed} <span class="item-status">{status}</span>{outcome}</h3>
<div class="images">{run_image}{baseline_image}</div>
{diff}
<table class="judges"><thead><tr><th>judge</th><th>baseline</th><th>now</th><th>scores (baseline → now)</th>
<th>human</th><th></th></tr></thead><tbody>
{judges}
</tbody></table>{drift}
</div>""",
        id=record.id,
        seed=record.seed,
        status=item.status,
        outcome=html(" · {}", record.outcome) if record.outcome not in ("passed", "pending") else Markup(),
        run_image=run_image,
        baseline_image=baseline_image,
        diff=diff,
        judges=judges,
        drift=html('<pre class="drift">{}</pre>', item.drift.note)
        if item.drift is not None and item.drift.note
        else Markup(),
    )


def _baseline_figure(state: ReviewState, item: ReviewItem, token: str) -> Markup:
    if item.before is None:
        return html('<figure class="before missing"><figcaption>baseline</figcaption><p>{}</p></figure>', "no entry")
    key = item.before_image
    if key is None:
        why = (
            "same inputs as this run (cache key unchanged)"
            if item.before.cache_key is not None and item.before.cache_key == item.record.cache_key
            else "not in the image cache"
        )
        return html('<figure class="before missing"><figcaption>baseline image</figcaption><p>{}</p></figure>', why)
    url = _url(f"/cached/{key}.png", token)
    return html(
        '<figure class="before"><figcaption>baseline ({1})</figcaption><a href="{0}" target="_blank" '
        'class="full"><img src="{0}" alt="the baseline\'s image"></a></figure>',
        url,
        state.baseline_image_source(key),
    )


def _judge_row(item: ReviewItem, section: str, position: int) -> Markup:
    now = item.record.verdicts.get(section)
    before = item.before.verdicts.get(section) if item.before is not None else None
    shown = now or before
    assert shown is not None
    scores = join(
        html(
            "<div>{}: {} → {}</div>",
            score.label,
            _value(before, score.name),
            _value(now, score.name),
        )
        for score in shown.scores
    )
    label = item.labels.get(section)
    human = (
        html(
            '<span class="human {}">{}{}</span>',
            label.verdict,
            label.verdict,
            html(" (judge is wrong)") if label.decision == "judge_wrong" else Markup(),
        )
        if label is not None
        else Markup("-")
    )
    wrong = label is not None and label.decision == "judge_wrong"
    button = (
        html(
            '<button type="button" class="judge-wrong" data-judge="{}" data-key="{}" aria-pressed="{}">{}</button>',
            section,
            position,
            "true" if wrong else "false",
            "judge is right after all" if wrong else html("{} is wrong", shown.title),
        )
        if now is not None and item.record.cache_key is not None
        else Markup()
    )
    return html(
        '<tr data-judge="{}"><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
        section,
        shown.title,
        _verdict_word(before),
        _verdict_word(now),
        scores,
        human,
        button,
    )


def _verdict_word(verdict: Verdict | None) -> Markup:
    if verdict is None:
        return Markup("-")
    return html('<span class="{0}">{0}</span>', "pass" if verdict.passed else "fail")


def _value(verdict: Verdict | None, name: str) -> str:
    score = verdict.score(name) if verdict is not None else None
    return "-" if score is None else f"{score.value:.4f}"
