"""Verdicts as JSON: a judge's section of a results.json record, and its entry in a baseline file.

A judge's section holds an envelope any page can render without the judge's code: passed, the named scores
(with direction), the report table and the judge's own details. CLIP's and ResNet-50's sections keep the
formats they had before judges were pluggable, so results.json files and baselines already saved still read.
Everything read here is untrusted: harness.common.json_input checks each field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harness.common.json_input import (
    Fields,
    ShapeError,
    any_value,
    boolean,
    list_of,
    mapping_of,
    number,
    obj,
    optional,
    text,
)
from harness.judging import clip, resnet
from harness.judging.judge import DIRECTIONS, SCORE_NAME_PATTERN, SECTION_PATTERN, Score, Table, TableRow, Verdict


class _Format:
    def __init__(
        self,
        column: str,
        expected: str,
        from_record: Callable[[Fields], Verdict],
        to_baseline: Callable[[Verdict, int], dict[str, Any]],
        from_baseline: Callable[[Fields], Verdict],
    ) -> None:
        self.column = column
        self.expected = expected  # how a message describes the section's shape
        self.from_record = from_record
        self.to_baseline = to_baseline
        self.from_baseline = from_baseline


# The built-in judges' own formats (the order is also the order of their columns).
_BUILTIN = {
    clip.SECTION: _Format(
        clip.ClipJudge.column or clip.ClipJudge.title,
        "an object with labels, probs and passed",
        clip.verdict_from_record,
        clip.baseline_entry,
        clip.verdict_from_baseline,
    ),
    resnet.SECTION: _Format(
        resnet.ResnetJudge.column or resnet.ResnetJudge.title,
        "an object with expect, expect_probs, top_k, top and passed",
        resnet.verdict_from_record,
        resnet.baseline_entry,
        resnet.verdict_from_baseline,
    ),
}


# What the built-ins' formats kept outside their own sections, before judges were pluggable: results.json's
# baseline note had one key per delta, and baseline entries always had a (null) `resnet` and a `clip`.
LEGACY_DELTA_KEYS = {
    "prob_delta": (clip.SECTION, "prob"),
    "margin_delta": (clip.SECTION, "margin"),
    "resnet_delta": (resnet.SECTION, "prob"),
}
BASELINE_NULL_SECTIONS = (resnet.SECTION,)
BASELINE_REQUIRED = (clip.SECTION, "an object with labels, prob, margin and passed")


def comparison_digest(comparable: str | None) -> str | None:
    """A short digest of a verdict's comparison key (CLIP's labels): baselines and reviewed labels keep it (it reads
    well in diffs, and says whether a later verdict judged the same check)."""
    import hashlib

    return None if comparable is None else hashlib.sha256(comparable.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def ordered_sections(sections: Iterable[str]) -> list[str]:
    """The built-in judges first, in their order, then the others by name."""
    found = set(sections)
    return [s for s in _BUILTIN if s in found] + sorted(found - set(_BUILTIN))


def is_section_name(key: str) -> bool:
    return bool(SECTION_PATTERN.match(key))


def judge_columns(verdict_maps: Iterable[Mapping[str, Verdict]]) -> list[tuple[str, str]]:
    """(section, column title) of every judge section in these verdicts (one mapping per item), in column order."""
    by_section: dict[str, list[Verdict]] = {}
    for verdicts in verdict_maps:
        for section, verdict in verdicts.items():
            by_section.setdefault(section, []).append(verdict)
    return [(section, column_title(section, by_section[section])) for section in ordered_sections(by_section)]


def column_title(section: str, verdicts: Iterable[Verdict]) -> str:
    """The header of a section's column on a page: the built-ins' own, else the judge's title."""
    if section in _BUILTIN:
        return _BUILTIN[section].column
    return next((verdict.title for verdict in verdicts), section)


# ---------------------------------------------------------------------------------------------
# results.json


def record_section(section: str, verdict: Verdict) -> dict[str, Any]:
    """The JSON a verdict is kept as in its item's results.json record."""
    if section in _BUILTIN:
        return dict(verdict.details)
    return {
        "title": verdict.title,
        "passed": verdict.passed,
        "scores": [_score_json(score) for score in verdict.scores],
        "table": {
            "rows": [{"cells": list(row.cells), "marks": list(row.marks)} for row in verdict.table.rows],
            "note": verdict.table.note,
        },
        "comparable": verdict.comparable,
        "comparable_what": verdict.comparable_what,
        "details": verdict.details,
    }


def verdict_from_record(section: str, data: Any, where: str) -> Verdict:
    """A section of a results.json record read back; ShapeError names the field that is wrong."""
    if not isinstance(data, dict):
        expected = _BUILTIN[section].expected if section in _BUILTIN else "an object with title, passed and scores"
        raise ShapeError(where, f"{expected} or null", data)
    fields = Fields(data, where)
    if section in _BUILTIN:
        return _BUILTIN[section].from_record(fields)
    table = fields.get("table", obj(_table, "an object with rows and note"))
    return Verdict(
        title=fields.get("title", text()),
        passed=fields.get("passed", boolean()),
        scores=tuple(fields.get("scores", list_of(obj(_score, "an object with name, value and label")))),
        table=table,
        comparable=fields.get("comparable", optional(text()), None),
        comparable_what=fields.get("comparable_what", text(), "check"),
        details=fields.get("details", mapping_of(any_value()), {}),
    )


# ---------------------------------------------------------------------------------------------
# Baselines


def baseline_section(section: str, verdict: Verdict, digits: int) -> dict[str, Any]:
    """What a baseline keeps of a verdict: scores rounded to ``digits``, so a change reads as a small diff."""
    if section in _BUILTIN:
        return _BUILTIN[section].to_baseline(verdict, digits)
    return {
        "title": verdict.title,
        "passed": verdict.passed,
        "scores": [{**_score_json(score), "value": round(score.value, digits)} for score in verdict.scores],
        "comparable": verdict.comparable,
        "comparable_what": verdict.comparable_what,
    }


def verdict_from_baseline(section: str, data: Any, where: str) -> Verdict:
    fields = Fields(data, where)
    if section in _BUILTIN:
        return _BUILTIN[section].from_baseline(fields)
    scores = tuple(fields.get("scores", list_of(obj(_score, "an object with name, value and label"))))
    passed = fields.get("passed", boolean())
    rows = [TableRow((f"{score.value:.4f}", score.label)) for score in scores]
    rows.append(TableRow(("pass" if passed else "fail", "verdict")))
    return Verdict(
        title=fields.get("title", text()),
        passed=passed,
        scores=scores,
        table=Table(tuple(rows)),
        comparable=fields.get("comparable", optional(text()), None),
        comparable_what=fields.get("comparable_what", text(), "check"),
    )


# ---------------------------------------------------------------------------------------------


def _score_json(score: Score) -> dict[str, Any]:
    return {
        "name": score.name,
        "value": score.value,
        "label": score.label,
        "better": score.better,
        "gated": score.gated,
        "what": score.what,
    }


def _score(fields: Fields) -> Score:
    name = fields.get("name", text())
    if not SCORE_NAME_PATTERN.match(name):
        raise ShapeError(fields.field("name"), "a score name ([a-z][a-z0-9_]*)", name)
    better = fields.get("better", text(), "higher")
    if better not in DIRECTIONS:
        raise ShapeError(fields.field("better"), "one of " + ", ".join(DIRECTIONS), better)
    return Score(
        name=name,
        value=fields.get("value", number()),
        label=fields.get("label", text()),
        better=better,
        gated=fields.get("gated", boolean(), False),
        what=fields.get("what", text(), ""),
    )


def _row(fields: Fields) -> TableRow:
    return TableRow(tuple(fields.get("cells", list_of(text()))), tuple(fields.get("marks", list_of(text()), ())))


def _table(fields: Fields) -> Table:
    rows = fields.get("rows", list_of(obj(_row, "an object with cells and marks")))
    return Table(tuple(rows), fields.get("note", text(), ""))
