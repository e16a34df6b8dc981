"""Human verdicts in a run: each record's ``human`` field, the verdict that decides pass/fail, and each judge's
agreement with people.

A label in baselines/reviewed-labels.json (harness.reports.reviewed_labels) belongs to one image (its cache key)
and one judge. A later run that judges the same image notes, per judge, what the person said and whether this
run's judge verdict agrees. With ``--t2i-human-verdicts override`` a human verdict that disagrees decides the
judge's pass/fail; the judge's scores and verdict stay as they are (an override never invents a score, and
a judge without a verdict on the image is never overridden into one).

Everything here works from the record alone, so the summary, results.json's ``cases`` list and a page made
later from results.json count exactly what the run decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.common.json_input import Fields, ShapeError, boolean, text
from harness.judging.formats import is_section_name, ordered_sections
from harness.reports.reviewed_labels import DECISIONS, VERDICTS, ImageKey

if TYPE_CHECKING:
    from harness.judging.judge import Verdict
    from harness.reports.records import Record
    from harness.reports.reviewed_labels import HumanLabel

MODES = ("show", "override")
DEFAULT_MODE = "show"
# How a sentence names each decision (the review page's buttons).
DECISION_WORDS = {"accept": "accepted", "reject": "rejected as a regression", "judge_wrong": "judge is wrong"}


@dataclass(frozen=True)
class HumanNote:
    """What a person said about one judge's verdict on this image, and how it stands with this run's."""

    verdict: str  # the human's: pass or fail
    judge_verdict: str  # the judge's when the person reviewed it
    decision: str  # accept, reject or judge_wrong
    by: str
    at: str
    agrees: bool  # this run's judge verdict equals the human's
    # This run decided the judge's pass/fail by the human verdict (override mode, and they disagree). Kept in
    # the record so that rates and summaries recomputed from results.json count what the run decided.
    overrides: bool = False

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def describe(self) -> str:
        """'human: fail (judge is wrong) - by Ann at 2026-12-01T17:00:00Z'."""
        return f"human: {self.verdict} ({DECISION_WORDS.get(self.decision, self.decision)}) - by {self.by} at {self.at}"

    def standing(self) -> str:
        """How it stands with this run's judge verdict."""
        if self.overrides:
            return f"disagrees with the judge; the human verdict decides: counted as {self.verdict}"
        return "agrees with the judge" if self.agrees else "disagrees with the judge (shown, not applied)"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "judge_verdict": self.judge_verdict,
            "decision": self.decision,
            "by": self.by,
            "at": self.at,
            "agrees": self.agrees,
            "overrides": self.overrides,
        }


def note_from_json(fields: Fields) -> HumanNote:
    """One judge's entry of a record's ``human`` field read back; ShapeError names the field that is wrong."""

    def one_of(name: str, allowed: tuple[str, ...]) -> str:
        value = fields.get(name, text())
        if value not in allowed:
            raise ShapeError(fields.field(name), " or ".join(map(repr, allowed)), value)
        return value

    return HumanNote(
        verdict=one_of("verdict", VERDICTS),
        judge_verdict=one_of("judge_verdict", VERDICTS),
        decision=one_of("decision", DECISIONS),
        by=fields.get("by", text()),
        at=fields.get("at", text()),
        agrees=fields.get("agrees", boolean()),
        overrides=fields.get("overrides", boolean(), False),
    )


def notes_from_json(value: Any, field: str) -> dict[str, HumanNote] | None:
    """A record's ``human`` field: null, or an object of judge sections (a check for json_input's Fields.get)."""
    if value is None:
        return None
    found = Fields(value, field)
    notes = {}
    for section, entry in found.data.items():
        if not is_section_name(section):
            raise ShapeError(found.field(section), "a judge section name (lowercase letters, digits, '_')", section)
        notes[section] = note_from_json(Fields(entry, found.field(section)))
    return notes


notes_from_json.expected = "an object of judge sections or null"  # type: ignore[attr-defined]


def verdict_word(passed: bool) -> str:
    return "pass" if passed else "fail"


def notes_for(
    labels: Mapping[str, HumanLabel] | None, verdicts: Mapping[str, Verdict], override: bool
) -> dict[str, HumanNote]:
    """The notes of one image: for each judge with a verdict in this run and a label (``labels``, by section, are
    the image's: harness.reports.reviewed_labels.by_image under the record's file, case, seed and cache key)."""
    notes = {}
    for section, verdict in verdicts.items():
        label = (labels or {}).get(section)
        if label is None or not label.applies_to(verdict):  # given on another check of the same image
            continue
        agrees = label.passed == verdict.passed
        notes[section] = HumanNote(
            label.verdict, label.judge_verdict, label.decision, label.by, label.at, agrees, override and not agrees
        )
    return notes


def image_key(file: str, case: str, seed: int, cache_key: str | None) -> ImageKey | None:
    """Where a record's labels are in harness.reports.reviewed_labels.by_image; None without a cache key."""
    return None if cache_key is None else (file, case, seed, cache_key)


def decided_passed(section: str, verdict: Verdict, notes: Mapping[str, HumanNote] | None) -> bool:
    """The judge's pass/fail as the run counted it: the human's where it overrode the judge, else the judge's."""
    note = (notes or {}).get(section)
    return note.passed if note is not None and note.overrides else verdict.passed


def override_explanation(verdict: Verdict, note: HumanNote) -> str:
    """A failing item's lines for a judge the human overrode: who decided, then the judge's own table."""
    head = (
        f"the human verdict overrides {verdict.title} (--t2i-human-verdicts override): the judge says "
        f"{verdict_word(verdict.passed)}, {note.by} says {note.verdict} "
        f"({DECISION_WORDS.get(note.decision, note.decision)}, reviewed at {note.at})"
    )
    return "\n".join(part for part in (head, verdict.explanation) if part)


@dataclass(frozen=True)
class HumanAgreement:
    """One judge against people, over this run's images that have a human verdict for it."""

    section: str
    title: str
    reviewed: int  # images with a human verdict for this judge and a judge verdict in this run
    agreed: int  # of those, where this run's judge verdict equals the human's
    overridden: int  # of those, decided by the human verdict

    @property
    def rate(self) -> float:
        return self.agreed / self.reviewed


def human_agreement(records: Iterable[Record]) -> list[HumanAgreement]:
    """Per judge (in column order), how often it agreed with the human verdicts of this run's images."""
    counts: dict[str, list[int]] = {}
    titles: dict[str, str] = {}
    for record in records:
        for section, note in (record.human or {}).items():
            verdict = record.verdicts.get(section)
            if verdict is None:  # a note is only made beside a verdict; a hand-edited file may say otherwise
                continue
            titles.setdefault(section, verdict.title)
            found = counts.setdefault(section, [0, 0, 0])
            found[0] += 1
            found[1] += verdict.passed == note.passed  # recomputed: the record's own `agrees` is not trusted
            found[2] += note.overrides
    return [HumanAgreement(section, titles[section], *counts[section]) for section in ordered_sections(counts)]
