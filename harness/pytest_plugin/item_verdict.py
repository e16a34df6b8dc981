"""An item's verdict, formed once: its judges' verdicts and, when a baseline is compared, its drift.

An item passes only when every check its case declares was computed on its own image and passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.reports.human_verdicts import decided_passed, override_explanation

if TYPE_CHECKING:
    from pathlib import Path

    from harness.cases.case_file import Case
    from harness.judging.judge import Judge, Verdict
    from harness.pytest_plugin.human_verdicts import HumanVerdicts
    from harness.pytest_plugin.scored_images import ScoredImage
    from harness.reports.human_verdicts import HumanNote
    from harness.reports.results import ItemRecord


class CaseCheckFailed(AssertionError):
    """A case whose image did not pass; the message is the table, shown without a traceback."""


def record_scored(
    record: ItemRecord,
    scored: ScoredImage,
    report_dir: Path,
    case: Case,
    judges: dict[str, Judge[Any, Any]],
    human: HumanVerdicts | None = None,
) -> str | None:
    """Copy the scored image into the record; the failure message, or None when every declared check passed.

    A declared check without a verdict (its judge failed on this image, or never ran) fails the item. The human
    verdicts on this image are noted beside the judges'; with --t2i-human-verdicts override, one that disagrees
    decides its judge's pass/fail (only a judge with a verdict: an override never stands in for a score).
    """
    if scored.image_path is not None:
        record.image = scored.image_path.relative_to(report_dir).as_posix()
    record.cached = scored.cached
    record.cache_key = scored.cache_key
    record.image_sha256 = scored.image_sha256
    record.warnings.extend(scored.notes)
    if scored.size is not None:
        record.width, record.height = scored.size
    record.timings.update(scored.timings)
    verdicts = {section: scored.verdicts[section] for section in case.checks if section in scored.verdicts}
    record.verdicts.update(verdicts)
    notes = human.notes(record.file, record.case, record.seed, record.cache_key, verdicts) if human else {}
    record.human = {section: note.to_json() for section, note in notes.items()} or None
    unscored = [
        scored.errors.get(section, f"{_title(judges, section)} produced no verdict for this image")
        for section in case.checks
        if section not in verdicts
    ]
    record.fault = scored.fault if scored.fault is not None else "; ".join(unscored) or None
    if record.fault is None and all(decided_passed(s, verdict, notes) for s, verdict in verdicts.items()):
        return None
    return failure_message(verdicts, scored.fault, unscored, notes)


def failure_message(
    verdicts: Mapping[str, Verdict],
    fault: str | None = None,
    unscored: Sequence[str] = (),
    human: Mapping[str, HumanNote] | None = None,
) -> str:
    """The failing item's message: why it has no image, or each verdict's table (with who decided it, where a
    human verdict overrode the judge) and each check not computed."""
    if fault is not None:
        return f"image not scored: {fault}"
    explained = []
    for section, verdict in verdicts.items():
        note = (human or {}).get(section)
        explained.append(
            override_explanation(verdict, note) if note is not None and note.overrides else verdict.explanation
        )
    return "\n".join([*explained, *(f"not scored: {why}" for why in unscored)])


def _title(judges: dict[str, Judge[Any, Any]], section: str) -> str:
    judge = judges.get(section)
    return judge.title if judge is not None else section


def rate_table(failures: dict[int, str | None]) -> str:
    """A rate-gated case's seeds, one line each: pass, or the first line of why it failed."""
    width = max(len(str(seed)) for seed in failures)
    lines = []
    for seed, failure in failures.items():
        shown = "pass" if failure is None else "fail: " + failure.split("\n", 1)[0].rstrip(":")
        lines.append(f"  seed {seed:>{width}}  {shown}")
    return "\n".join(lines)
