"""A case judged over its seeds: its pass rate with a Wilson interval, each judge's scores as means with
intervals, whether its seeds disagree, and how a rate compares with a baseline's.

One image's verdict is one draw from the model's distribution for the prompt; these summaries are what a
case's verdict means once it has several seeds. The same functions serve the run (the gate of a case with
``min_pass_rate``), results.json's ``cases`` list, the report, baselines and the compare page, so every number
on a page can be recomputed from the per-seed records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.common.rate_statistics import DEFAULT_ALPHA, mean_interval, percent, rate_drop_p_value, wilson_interval
from harness.judging.formats import comparison_digest, ordered_sections

if TYPE_CHECKING:
    from harness.judging.judge import Verdict
    from harness.reports.records import Record

# A rate exactly at the gate passes despite float rounding (6 of 8 against 0.75).
_EPSILON = 1e-9
CASE_STATUSES = ("regressed", "improved", "unchanged", "new")
# Outcomes of an item that never ran its checks: a seed skipped (or not finished) says nothing about the prompt.
_NOT_RUN = ("skipped", "pending")


@dataclass(frozen=True)
class SeedResult:
    """What a case's rate needs of one seed: whether all its checks passed, and its verdicts' scores."""

    seed: int
    passed: bool
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)


def seed_result(record: Record) -> SeedResult | None:
    """The seed's result, or None when it was not run (skipped).

    A seed passes when every check its case declares passed on its own image: a check left unscored sets the
    record's fault, and an item that errored (a missing model) ran no check, so both count as failed seeds. A
    judge the run let a human verdict override (--t2i-human-verdicts override) counts as the human decided.
    """
    from harness.reports.human_verdicts import decided_passed

    if record.outcome in _NOT_RUN:
        return None
    passed = (
        record.fault is None
        and bool(record.verdicts)
        and all(decided_passed(section, verdict, record.human) for section, verdict in record.verdicts.items())
    )
    return SeedResult(record.seed, passed and record.outcome != "error", record.verdicts)


@dataclass(frozen=True)
class ScoreSummary:
    """One score of one judge over a case's seeds: the mean with its 95% Student t interval."""

    label: str
    better: str
    gated: bool
    n: int
    mean: float
    low: float | None  # None with one value: an interval from one seed is not defined
    high: float | None

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.low is None or self.high is None else (self.low, self.high)

    def to_json(self, digits: int | None = None) -> dict[str, Any]:
        interval = self.interval
        return {
            "label": self.label,
            "better": self.better,
            "gated": self.gated,
            "n": self.n,
            "mean": _rounded(self.mean, digits),
            "interval": None if interval is None else [_rounded(interval[0], digits), _rounded(interval[1], digits)],
        }

    @classmethod
    def from_json(cls, fields: Any) -> ScoreSummary:
        from harness.common.json_input import ShapeError, boolean, list_of, number, optional, text, whole

        interval = fields.get("interval", optional(list_of(number())), None)
        if interval is not None and len(interval) != 2:
            raise ShapeError(fields.field("interval"), "[low, high] or null", interval)
        return cls(
            label=fields.get("label", text()),
            better=fields.get("better", text(), "higher"),
            gated=fields.get("gated", boolean(), False),
            n=fields.get("n", whole(1, 2**31)),
            mean=fields.get("mean", number()),
            low=None if interval is None else interval[0],
            high=None if interval is None else interval[1],
        )


@dataclass(frozen=True)
class CaseRate:
    """A case over the seeds that ran: how many passed, the rate's interval, and each judge's score summaries."""

    file: str
    case: str
    seeds_run: int
    seeds_passed: int
    min_pass_rate: float | None = None  # the gate; None: every seed must pass
    scores: dict[str, dict[str, ScoreSummary]] = field(default_factory=dict)  # section -> score name -> summary
    # section -> a digest of its verdicts' comparison key (CLIP's labels): rates under other labels do not compare
    comparable: dict[str, str | None] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.file, self.case)

    @property
    def pass_rate(self) -> float | None:
        return self.seeds_passed / self.seeds_run if self.seeds_run else None

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson score interval of the pass rate ([0, 1] when no seed ran)."""
        return wilson_interval(self.seeds_passed, self.seeds_run)

    @property
    def unstable(self) -> bool:
        """Its seeds disagree: some passed and some failed."""
        return 0 < self.seeds_passed < self.seeds_run

    @property
    def gate_met(self) -> bool:
        """Whether the rate reaches ``min_pass_rate`` (without one: whether every seed passed)."""
        if not self.seeds_run:
            return False
        if self.min_pass_rate is None:
            return self.seeds_passed == self.seeds_run
        return self.seeds_passed / self.seeds_run >= self.min_pass_rate - _EPSILON

    def main_scores(self) -> list[tuple[str, str, ScoreSummary]]:
        """(section, score name, summary) of each judge's main score: the first its verdicts give (CLIP's
        intended-label probability, ResNet's best expected-class probability), in column order."""
        return [(section, *next(iter(scores.items()))) for section, scores in self.scores.items() if scores]

    def describe(self) -> str:
        """'6 of 8 seeds passed (75%, 95% interval 41%-93%)'"""
        low, high = self.interval
        rate = self.pass_rate
        shown = percent(rate) if rate is not None else "-"
        return (
            f"{self.seeds_passed} of {self.seeds_run} seed{'s' if self.seeds_run != 1 else ''} passed "
            f"({shown}, 95% interval {percent(low)}-{percent(high)})"
        )

    def to_json(self, digits: int | None = None) -> dict[str, Any]:
        """The rate and summaries; results.json's case entry adds its verdict, a baseline stores this as it is."""
        low, high = self.interval
        return {
            "file": self.file,
            "case": self.case,
            "seeds_run": self.seeds_run,
            "seeds_passed": self.seeds_passed,
            "pass_rate": _rounded(self.pass_rate, digits),
            "interval": [_rounded(low, digits), _rounded(high, digits)],
            "min_pass_rate": self.min_pass_rate,
            "unstable": self.unstable,
            "scores": {
                section: {name: summary.to_json(digits) for name, summary in by_name.items()}
                for section, by_name in self.scores.items()
            },
            "comparable": dict(self.comparable),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> CaseRate:
        """A baseline's case entry; json_input.ShapeError names the field that is wrong."""
        from harness.common.json_input import Fields, ShapeError, mapping_of, number, obj, optional, text, whole

        fields = Fields(data, where)
        run = fields.get("seeds_run", whole(0, 2**31))
        passed = fields.get("seeds_passed", whole(0, 2**31))
        if passed > run:
            raise ShapeError(fields.field("seeds_passed"), f"at most seeds_run ({run})", passed)
        summary = obj(ScoreSummary.from_json, "an object with label, n, mean and interval")
        return cls(
            file=fields.get("file", text()),
            case=fields.get("case", text()),
            seeds_run=run,
            seeds_passed=passed,
            min_pass_rate=fields.get("min_pass_rate", optional(number(0, 1)), None),
            scores=fields.get("scores", mapping_of(mapping_of(summary)), {}),
            comparable=fields.get("comparable", mapping_of(optional(text())), {}),
        )


def _rounded(value: float | None, digits: int | None) -> float | None:
    """As it is, or rounded to ``digits`` (a baseline's 4: no churn in its diffs)."""
    return value if value is None or digits is None else round(value, digits)


def case_rate(file: str, case: str, seeds: Iterable[SeedResult], min_pass_rate: float | None = None) -> CaseRate:
    """The case's rate over ``seeds`` (the ones that ran) and the mean of every score its verdicts give."""
    seeds = list(seeds)
    values: dict[tuple[str, str], list[float]] = {}
    shapes: dict[tuple[str, str], tuple[str, set[str], str, str, bool]] = {}  # what, labels, title, better, gated
    comparable: dict[str, str | None] = {}
    for seed in seeds:
        for section, verdict in seed.verdicts.items():
            comparable.setdefault(section, comparison_digest(verdict.comparable))
            for score in verdict.scores:
                key = (section, score.name)
                values.setdefault(key, []).append(score.value)
                what, labels, *_ = shapes.setdefault(key, (score.what, set(), verdict.title, score.better, score.gated))
                labels.add(score.label)
    scores: dict[str, dict[str, ScoreSummary]] = {}
    for section in ordered_sections({section for section, _ in values}):
        for (s, name), found in values.items():
            if s != section:
                continue
            what, labels, title, better, gated = shapes[(s, name)]
            # Named the same in every case (ResNet's label names its best expected class, which differs from seed
            # to seed and case to case): the judge's title and how sentences name the score.
            label = f"{title} {what}" if what else next(iter(labels)) if len(labels) == 1 else f"{title} {name}"
            # Not clamped to [0, 1]: a gated score need not be a probability (CLIP's margin is a difference of two,
            # in [-1, 1]), and a clamped interval of negative margins was [0, 0], which read as "rose beyond the
            # tolerance" against any baseline. Unclamped, an interval past a scale's edge only errs on the cautious
            # side of the drop and rise rules.
            mean, low, high = mean_interval(found)
            scores.setdefault(section, {})[name] = ScoreSummary(label, better, gated, len(found), mean, low, high)
    return CaseRate(
        file=file,
        case=case,
        seeds_run=len(seeds),
        seeds_passed=sum(seed.passed for seed in seeds),
        min_pass_rate=min_pass_rate,
        scores=scores,
        comparable={section: comparable[section] for section in ordered_sections(comparable)},
    )


def by_case(records: Iterable[Record]) -> dict[tuple[str, str], list[Record]]:
    """The records of each (case file, case), in the order the cases first appear."""
    found: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        found.setdefault((record.file, record.case), []).append(record)
    return found


def case_rates(records: Iterable[Record]) -> list[CaseRate]:
    """One CaseRate per case with a seed that ran, in the order the cases first appear."""
    rates = []
    for (file, case), items in by_case(records).items():
        seeds = [result for result in map(seed_result, items) if result is not None]
        if seeds:
            rates.append(case_rate(file, case, seeds, items[0].min_pass_rate))
    return rates


# ---------------------------------------------------------------------------------------------
# A rate against a baseline's.


@dataclass(frozen=True)
class ScoreMove:
    """A gated score whose mean moved by more than the tolerance, beyond its interval."""

    section: str
    name: str
    before: ScoreSummary
    after: ScoreSummary


@dataclass(frozen=True)
class CaseDrift:
    """How a case's rate and mean scores moved against a baseline's (one rule for runs and the compare page)."""

    status: str  # one of CASE_STATUSES
    tolerance: float
    alpha: float
    before: CaseRate | None
    after: CaseRate
    drop_p: float | None = None  # one-sided Fisher's exact p that the rate now is lower
    rise_p: float | None = None  # ... that it is higher
    dropped: tuple[ScoreMove, ...] = ()
    rose: tuple[ScoreMove, ...] = ()
    note: str = ""  # why a case counts as new

    @property
    def rate_dropped(self) -> bool:
        return self.drop_p is not None and self.drop_p < self.alpha

    @property
    def severity(self) -> tuple[float, float]:
        """Sort key, worst first: the rate drop's p-value, then the larger fall in rate."""
        rate_change = 0.0
        if self.before is not None and self.before.pass_rate is not None and self.after.pass_rate is not None:
            rate_change = self.after.pass_rate - self.before.pass_rate
        return (self.drop_p if self.drop_p is not None else 1.0, rate_change)

    def explain(self, name: str) -> str:
        if self.status == "new":
            return f"baseline {name!r}: new case ({self.note})"
        before = self.before
        assert before is not None
        lines = []
        if self.rate_dropped:
            lines.append(
                f"baseline {name!r}: the pass rate dropped from {before.describe()} to {self.after.describe()}; "
                f"one-sided Fisher's exact p = {self.drop_p:.4f} < {self.alpha:g}, more than chance explains"
            )
        for move in self.dropped:
            interval = move.after.interval
            where = ""
            if interval is not None:  # the favourable end, which is still too far
                where = (
                    f" (95% interval from {interval[0]:.4f})"
                    if move.after.better == "lower"
                    else f" (95% interval up to {interval[1]:.4f})"
                )
            lines.append(
                f"baseline {name!r}: mean {move.after.label} went from {move.before.mean:.4f} to "
                f"{move.after.mean:.4f}{where}, worse by more than the tolerance {self.tolerance:g} beyond its interval"
            )
        for move in self.rose:  # say which mean improved: the rates alone may not have moved at all
            lines.append(
                f"baseline {name!r}: mean {move.after.label} went from {move.before.mean:.4f} to "
                f"{move.after.mean:.4f}, better by more than the tolerance {self.tolerance:g} beyond its interval"
            )
        if not lines or self.status == "improved":
            words = {"unchanged": "no change beyond chance and", "improved": "improved beyond chance or"}[self.status]
            lines.append(
                f"baseline {name!r}: {words} the tolerance {self.tolerance:g}: {before.describe()} then, "
                f"{self.after.describe()} now (Fisher's p for a drop = {self.drop_p:.4f})"
            )
        return "\n".join(lines)

    def to_json(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "status": self.status,
            "tolerance": self.tolerance,
            "alpha": self.alpha,
            "note": self.note or None,
            "drop_p": self.drop_p,
            "rise_p": self.rise_p,
            "before": None if self.before is None else self.before.to_json(),
            "dropped": [f"{m.section}.{m.name}" for m in self.dropped],
            "rose": [f"{m.section}.{m.name}" for m in self.rose],
        }


def compare_rates(
    before: CaseRate | None, after: CaseRate, tolerance: float, alpha: float = DEFAULT_ALPHA
) -> CaseDrift:
    """Regressed when the rate dropped by more than chance explains (one-sided Fisher's exact test, p < alpha) or
    when a gated score's mean fell by more than the tolerance even at the favourable end of its 95% interval."""
    if before is None or not before.seeds_run:
        return CaseDrift("new", tolerance, alpha, None, after, note="no baseline entry for the case")
    for section, key in after.comparable.items():
        if section in before.comparable and before.comparable[section] != key:
            return CaseDrift(
                "new",
                tolerance,
                alpha,
                None,
                after,
                note=f"its {section} check changed since, so scores do not compare",
            )
    drop_p = rate_drop_p_value(before.seeds_passed, before.seeds_run, after.seeds_passed, after.seeds_run)
    rise_p = rate_drop_p_value(after.seeds_passed, after.seeds_run, before.seeds_passed, before.seeds_run)
    dropped, rose = [], []
    for section, by_name in after.scores.items():
        for name, now in by_name.items():
            then = before.scores.get(section, {}).get(name)
            if then is None or not now.gated or now.better == "neither":
                continue
            sign = 1.0 if now.better == "higher" else -1.0
            # The favourable and unfavourable ends of the interval, in the better direction (the mean without one).
            best = (now.high if sign > 0 else now.low) if now.interval else now.mean
            worst = (now.low if sign > 0 else now.high) if now.interval else now.mean
            assert best is not None and worst is not None
            if sign * (then.mean - best) > tolerance + _EPSILON:
                dropped.append(ScoreMove(section, name, then, now))
            elif sign * (worst - then.mean) > tolerance + _EPSILON:
                rose.append(ScoreMove(section, name, then, now))
    if drop_p < alpha or dropped:
        status = "regressed"
    elif rise_p < alpha or rose:
        status = "improved"
    else:
        status = "unchanged"
    return CaseDrift(status, tolerance, alpha, before, after, drop_p, rise_p, tuple(dropped), tuple(rose))


# ---------------------------------------------------------------------------------------------
# results.json's `cases` list.


def case_entry(raw_records: Iterable[dict[str, Any]], drift: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """One case's entry in results.json's `cases` list, from its seeds' records; None when no seed of it ran.

    ``passed`` is the case's verdict as pytest gave it: for a rate-gated case its item's outcome (its gate met,
    and no rate regression against a baseline), otherwise every seed's item passed.
    """
    from harness.common.json_input import ShapeError
    from harness.reports.records import parse_record

    records = []
    for raw in raw_records:
        try:
            records.append(parse_record(raw))
        except ShapeError:  # a record of this run cannot be of the wrong shape; never summarise a guess
            continue
    rates = case_rates(records)
    if not rates:
        return None
    (rate,) = rates
    entry = rate.to_json()
    del entry["comparable"]  # a baseline's comparison key, not for readers
    scores = entry.pop("scores")
    return {**entry, "passed": case_passed(rate, records), "scores": scores, "baseline": drift}


def case_passed(rate: CaseRate, records: Iterable[Record]) -> bool:
    """The case's verdict as pytest gave it: a rate-gated case's item passed (its gate met, and no rate
    regression against a baseline), or every seed's item of any other case passed."""
    ran = [record for record in records if record.key[:2] == rate.key and seed_result(record) is not None]
    if not ran:
        return False
    if rate.min_pass_rate is not None:
        return all(record.case_outcome in _PASSED for record in ran)
    return all(record.outcome in _PASSED for record in ran)


_PASSED = ("passed", "xpassed")
