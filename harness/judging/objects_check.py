"""The `objects:` section of a case: GenEval's vocabulary (class, count, max_count, color, position), validated.

Short form, a list: ``objects: [{class: dog, count: 1}]``; mapping form with the detection settings:
``objects: {expect: [...], threshold: 0.9, max_overlap: 0.5}``. Every problem is reported with its line and
how to fix it (harness.cases.case_file.SectionReader).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.cases.case_file import also_on, kind_of, label_key, quote_hint, suggest
from harness.cases.yaml_source import YamlList, YamlMap
from harness.judging.geneval_rules import COLORS, MAX_OBJECTS, MAX_OVERLAP, RELATIONS, Requirement, default_threshold

if TYPE_CHECKING:
    from harness.cases.case_file import SectionReader

SECTION = "objects"
KEYS = ("expect", "threshold", "max_overlap")
OBJECT_KEYS = ("class", "count", "max_count", "color", "position")
# Longer names are surely a mistake (a prompt pasted as a class); the detector's tokenizer has the real limit.
MAX_NAME_CHARS = 200
_EXAMPLE = "{class: dog, count: 1}"


@dataclass(frozen=True)
class ObjectsCheck:
    """The objects a case's image must show (or not), and how detections are filtered before counting."""

    requirements: tuple[Requirement, ...]
    threshold: float | None = None  # None: GenEval's, THRESHOLD or COUNTING_THRESHOLD (geneval_rules)
    max_overlap: float = MAX_OVERLAP
    # Where each object is written, for problems found with the model (a name too long for its tokenizer).
    lines: tuple[int, ...] = field(default=(), compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The class names, in order: what the detector is asked to find."""
        return tuple(r.name for r in self.requirements)

    @property
    def colored(self) -> tuple[str, ...]:
        """The class names whose colour CLIP is asked about."""
        return tuple(r.name for r in self.requirements if r.color is not None)

    @property
    def confidence(self) -> float:
        """The detection confidence a box must exceed to count."""
        return self.threshold if self.threshold is not None else default_threshold(self.requirements)


def check_to_yaml(check: ObjectsCheck) -> Any:
    """The section that parses back to ``check``: the short list form unless a setting differs from the default."""
    objects = []
    for req in check.requirements:
        entry: dict[str, Any] = {"class": req.name, "count": req.count}
        if req.max_count is not None:
            entry["max_count"] = req.max_count
        if req.color is not None:
            entry["color"] = req.color
        if req.position is not None:
            entry["position"] = list(req.position)
        objects.append(entry)
    settings: dict[str, Any] = {}
    if check.threshold is not None:
        settings["threshold"] = check.threshold
    if check.max_overlap != MAX_OVERLAP:
        settings["max_overlap"] = check.max_overlap
    return {"expect": objects, **settings} if settings else objects


def parse_objects(section: SectionReader) -> ObjectsCheck | None:
    """The check of a case's `objects:` section; None when it has problems (each reported on its line)."""
    report = _Problems(section)
    expect = section.value("expect")
    raw = expect.raw
    if not isinstance(raw, YamlList) or not raw:
        got = "an empty list" if isinstance(raw, YamlList) else kind_of(raw)
        report(
            expect.line,
            f"'objects' needs a list of objects, each a mapping such as {_EXAMPLE} (or, in the mapping form, "
            f"'objects.expect: [...]'); got {got}",
        )
        return None
    entries = [
        _object(report, item, line, number)
        for number, (item, line) in enumerate(zip(raw, raw.item_lines, strict=True), 1)
    ]
    threshold = section.number("threshold", 0, 1, "such as 0.3 (a detection counts above it)", what="a confidence")
    max_overlap = section.number("max_overlap", 0, 1, "such as 0.5 (1 keeps overlapping boxes)", what="an IoU")
    if ("threshold" in section and threshold is None) or ("max_overlap" in section and max_overlap is None):
        return None  # reported by section.number
    # Names and positions across the list, among the objects that have a name (the others are reported).
    _names_and_positions(report, [entry for entry in entries if entry.requirement.name])
    if report.count:
        return None
    # A position names its object as the list spells it, so that results use one spelling throughout.
    spelled = {label_key(entry.requirement.name): entry.requirement.name for entry in entries}
    requirements = tuple(
        replace(r, position=(r.position[0], spelled[label_key(r.position[1])])) if r.position else r
        for r in (entry.requirement for entry in entries)
    )
    return ObjectsCheck(
        requirements=requirements,
        threshold=threshold,
        max_overlap=max_overlap if max_overlap is not None else MAX_OVERLAP,
        lines=tuple(entry.line for entry in entries),
    )


class _Problems:
    """section.problem, counted: the check is None as soon as one problem was reported."""

    def __init__(self, section: SectionReader) -> None:
        self.section = section
        self.count = 0

    def __call__(self, line: int, message: str) -> None:
        self.count += 1
        self.section.problem(line, message)


@dataclass(frozen=True)
class _Entry:
    requirement: Requirement
    line: int  # the class's line
    position_line: int


def _object(report: _Problems, item: Any, line: int, number: int) -> _Entry:
    """One object of the list; problems reported (the entry is then a placeholder, never used)."""
    if not isinstance(item, YamlMap):
        hint = f" (write {{class: {item}}})" if isinstance(item, str) and item.strip() else ""
        report(line, f"object {number} must be a mapping such as {_EXAMPLE}, got {kind_of(item)}{hint}")
        return _Entry(Requirement(""), line, line)
    for key in item:
        if key not in OBJECT_KEYS:
            report(
                item.key_lines[key],
                f"unknown key {key!r} in object {number}{suggest(key, OBJECT_KEYS, n=1)}; "
                f"an object takes {', '.join(OBJECT_KEYS)}",
            )
    name = _name(report, item, number)
    who = f"object {name!r}" if name else f"object {number}"
    count = _whole(report, item, "count", who, 0, 1)
    max_count = _whole(report, item, "max_count", who, count if count is not None else 0, None)
    color = _color(report, item, who, count)
    position = _position(report, item, who, count)
    requirement = Requirement(name or "", count if count is not None else 1, max_count, color, position)
    class_line = item.key_lines.get("class", line)
    return _Entry(requirement, class_line, item.key_lines.get("position", class_line))


def _name(report: _Problems, item: YamlMap, number: int) -> str | None:
    raw, line = item.get("class"), item.key_lines.get("class", item.line)
    if raw is None:
        report(line, f"object {number} has no 'class': name the object, e.g. {_EXAMPLE}")
        return None
    if not isinstance(raw, str):
        report(line, quote_hint(f"object {number}'s 'class'", raw, item.texts.get("class")))
        return None
    if not raw.strip():
        report(line, f"object {number}'s 'class' is empty; name the object the detector should find")
        return None
    if len(raw) > MAX_NAME_CHARS:
        report(line, f"object {number}'s 'class' is {len(raw)} characters; name an object in a few words")
        return None
    return raw


def _whole(report: _Problems, item: YamlMap, key: str, who: str, minimum: int, default: int | None) -> int | None:
    raw = item.get(key)
    if raw is None:
        return default
    line = item.key_lines[key]
    meaning = "at least this many" if key == "count" else "at most this many"
    if isinstance(raw, bool) or not isinstance(raw, int):
        report(line, f"{who}: '{key}' must be a whole number ({meaning}), got {kind_of(raw)}")
        return None
    if not minimum <= raw <= MAX_OBJECTS:
        why = f"the detector keeps at most {MAX_OBJECTS} boxes of a class (GenEval's max_objects)"
        if key == "max_count" and raw < minimum:
            why = f"it cannot be below 'count' ({minimum})"
        report(line, f"{who}: '{key}' must be from {minimum} to {MAX_OBJECTS} ({meaning}): {why}; got {raw}")
        return None
    return raw


def _color(report: _Problems, item: YamlMap, who: str, count: int | None) -> str | None:
    raw = item.get("color")
    if raw is None:
        return None
    line = item.key_lines["color"]
    if not isinstance(raw, str) or raw not in COLORS:
        shown = repr(raw) if isinstance(raw, str) else kind_of(raw)
        near = suggest(raw, COLORS, n=1) if isinstance(raw, str) else ""
        report(line, f"{who}: unknown colour {shown}{near}; use one of GenEval's colours: {', '.join(COLORS)}")
        return None
    if count == 0:
        report(line, f"{who}: a colour needs an object to look at, and count 0 means absent: remove the colour")
        return None
    return raw


def _position(report: _Problems, item: YamlMap, who: str, count: int | None) -> tuple[str, str] | None:
    raw = item.get("position")
    if raw is None:
        return None
    line = item.key_lines["position"]
    if not isinstance(raw, YamlList) or len(raw) != 2 or not all(isinstance(part, str) for part in raw):
        report(
            line,
            f"{who}: 'position' must be [relation, other object's class], e.g. position: [right of, teddy bear]; "
            f"got {kind_of(raw)}",
        )
        return None
    relation, other = raw
    if relation not in RELATIONS:
        near = suggest(relation, RELATIONS, n=1)
        report(line, f"{who}: unknown relation {relation!r}{near}; use one of GenEval's: {', '.join(RELATIONS)}")
        return None
    if count == 0:
        report(line, f"{who}: a position needs an object to place, and count 0 means absent: remove the position")
        return None
    return relation, other


def _names_and_positions(report: _Problems, entries: list[_Entry]) -> None:
    """Class names unique in the list; each position names another object of the list, one that is wanted."""
    by_key: dict[str, _Entry] = {}
    for entry in entries:
        key = label_key(entry.requirement.name)
        first = by_key.setdefault(key, entry)
        if first is not entry:
            report(
                entry.line,
                f"object {entry.requirement.name!r} is listed twice{also_on(first.line, entry.line)}; one entry per "
                "class (for two of them write count: 2), so that a position can name it",
            )
    for entry in entries:
        req = entry.requirement
        if req.position is None:
            continue
        relation, other = req.position
        target = by_key.get(label_key(other))
        if target is None:
            others = [repr(e.requirement.name) for e in entries if e is not entry]
            listed = f"the others are {', '.join(others)}" if others else "it is the only one"
            report(
                entry.position_line,
                f"object {req.name!r} is placed {relation} {other!r}, which is not an object of this list "
                f"({listed}); add {{class: {other}}} to the list, or name one of the others",
            )
        elif target is entry:
            report(entry.position_line, f"object {req.name!r} is placed relative to itself; name another object")
        elif target.requirement.count == 0:
            report(
                entry.position_line,
                f"object {req.name!r} is placed {relation} {other!r}, which must be absent (count 0); "
                "place it relative to an object that is there",
            )
