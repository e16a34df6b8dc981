"""GenEval's rules, as plain functions on detections: which boxes count, how many, what colour, where.

Transcribed from GenEval's evaluation/evaluate_images.py (djghosh13/geneval, commit af4902f): its defaults,
the per-class filter (threshold, max_objects, max_overlap), the include/exclude count rules, the colour vote and
relative_position with its minimum offset. Nothing here imports torch or knows the detector; the objects judge
(harness.judging.objects) feeds it detections, and a GenEval importer can use the constants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# GenEval's colour vocabulary (evaluate_images.py COLORS, prompts/create_prompts.py colors), in its order:
# a colour vote's ties go to the first.
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
# GenEval's relations (create_prompts.py positions): where an object is relative to another.
RELATIONS = ("left of", "right of", "above", "below")
# GenEval's zero-shot colour classifier: these three prompts per colour, their text embeddings averaged.
COLOR_TEMPLATES = (
    "a photo of a {color} {object}",
    "a photo of a {color}-colored {object}",
    "a photo of a {color} object",
)

THRESHOLD = 0.3  # --options threshold: a detection counts when its confidence is above it
COUNTING_THRESHOLD = 0.9  # counting_threshold: the same, for counting prompts (GenEval's tag "counting")
MAX_OBJECTS = 16  # max_objects: at most this many detections of a class, the most confident
MAX_OVERLAP = 1.0  # max_overlap: drop a box overlapping a more confident one of its class by this IoU; 1: never
POSITION_THRESHOLD = 0.1  # position_threshold: the offset that does not count, as a share of both boxes' sizes

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, y downwards


@dataclass(frozen=True)
class Detection:
    """One box of one class, and (when its colour was asked about) CLIP's colour probabilities, in COLORS' order."""

    score: float
    box: Box
    color_probs: tuple[float, ...] = ()

    @property
    def color(self) -> str | None:
        return color_of(self.color_probs) if self.color_probs else None


@dataclass(frozen=True)
class Requirement:
    """One object of a check: GenEval's include clause (count, color, position) and exclude clause in one.

    ``count``: at least this many (GenEval's include count); 0 with no ``max_count`` means none at all.
    ``max_count``: at most this many (GenEval's exclude ``count: N`` is ``max_count: N - 1``).
    ``position``: (relation, the other requirement's class name).
    """

    name: str
    count: int = 1
    max_count: int | None = None
    color: str | None = None
    position: tuple[str, str] | None = None

    @property
    def most(self) -> int | None:
        """The most objects allowed: max_count, or 0 for an absent object; None: no upper bound."""
        if self.max_count is not None:
            return self.max_count
        return 0 if self.count == 0 else None


def is_counting(requirements: Sequence[Requirement]) -> bool:
    """Whether GenEval would call the check a counting prompt (those ask for 2 to 4 objects and at most as many):
    an object wanted more than once, or bounded by a max_count."""
    return any(r.count >= 2 or r.max_count is not None for r in requirements)


def default_threshold(requirements: Sequence[Requirement]) -> float:
    return COUNTING_THRESHOLD if is_counting(requirements) else THRESHOLD


# -- which detections count --------------------------------------------------------------------------------------


def iou(box_a: Box, box_b: Box) -> float:
    """GenEval's compute_iou: boxes in whole pixels, so a box's width is x1 - x0 + 1."""

    def area(box: Sequence[float]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inner = area((max(box_a[0], box_b[0]), max(box_a[1], box_b[1]), min(box_a[2], box_b[2]), min(box_a[3], box_b[3])))
    union = area(box_a) + area(box_b) - inner
    return inner / union if union else 0.0


def kept(
    candidates: Sequence[Detection],
    threshold: float,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = MAX_OVERLAP,
) -> list[Detection]:
    """The detections of one class that count, most confident first (GenEval's evaluate_image loop).

    Confidence strictly above ``threshold``; the ``max_objects`` most confident; then, greedily from the most
    confident, a box whose IoU with a box already kept is ``max_overlap`` or more is dropped (never when 1).
    Equal scores keep the detector's order.
    """
    ordered = sorted(candidates, key=lambda d: -d.score)
    remaining = [d for d in ordered if d.score > threshold][:max_objects]
    result: list[Detection] = []
    while remaining:
        best = remaining.pop(0)
        result.append(best)
        if max_overlap < 1:
            remaining = [d for d in remaining if iou(best.box, d.box) < max_overlap]
    return result


# -- colour and position -----------------------------------------------------------------------------------------


def color_of(probs: Sequence[float]) -> str:
    """The colour CLIP picked: the highest probability, the first colour on a tie (argmax)."""
    if len(probs) != len(COLORS):
        raise ValueError(f"{len(probs)} colour probabilities, expected {len(COLORS)} (one per colour)")
    best = max(range(len(COLORS)), key=lambda i: (probs[i], -i))
    return COLORS[best]


def relative_position(box_a: Box, box_b: Box, threshold: float = POSITION_THRESHOLD) -> frozenset[str]:
    """Where A is relative to B (GenEval's relative_position): the relations of its centre's offset.

    The offset on each axis shrinks by ``threshold`` times the two boxes' sizes on that axis (what is left, or 0);
    when nothing is left on both axes (under 1e-3 px) A is nowhere relative to B. Otherwise each axis's remaining
    share of the full offset's length decides: below -0.5 is left of (or above), over 0.5 right of (or below).
    Along one axis, two 10-pixel boxes are thus in a relation only beyond 4 pixels: 2 do not count, and the
    2 left must be more than half.
    """
    center_a = ((box_a[0] + box_a[2]) / 2, (box_a[1] + box_a[3]) / 2)
    center_b = ((box_b[0] + box_b[2]) / 2, (box_b[1] + box_b[3]) / 2)
    size_a = (abs(box_a[2] - box_a[0]), abs(box_a[3] - box_a[1]))
    size_b = (abs(box_b[2] - box_b[0]), abs(box_b[3] - box_b[1]))
    offset = (center_a[0] - center_b[0], center_a[1] - center_b[1])
    revised = tuple(
        max(abs(offset[i]) - threshold * (size_a[i] + size_b[i]), 0) * math.copysign(1, offset[i]) if offset[i] else 0.0
        for i in range(2)
    )
    if all(abs(value) < 1e-3 for value in revised):
        return frozenset()
    length = math.hypot(*offset)
    dx, dy = revised[0] / length, revised[1] / length
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return frozenset(relations)


# -- the rules ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    """One rule of one object: met or not, and why, in words."""

    index: int  # the requirement's position in the check
    kind: str  # "count", "max_count", "color" or "position"
    passed: bool
    text: str  # what the rule asks: "at least 1 'dog'"
    reason: str  # what was found: "found 0"


def _scores(detections: Sequence[Detection]) -> str:
    return ", ".join(f"{d.score:.2f}" for d in detections)


def _found(name: str, detections: Sequence[Detection]) -> str:
    if not detections:
        return f"found no {name!r}"
    return f"found {len(detections)} {name!r} ({_scores(detections)})"


def _misplaced(
    name: str, relation: str, other: str, objects: Sequence[Detection], targets: Sequence[Detection]
) -> str | None:
    """Why not every object is ``relation`` every target (GenEval stops at the first pair), or None."""
    for obj in objects:
        for target in targets:
            relations = relative_position(obj.box, target.box)
            if relation not in relations:
                where = " and ".join(sorted(relations)) or "neither left, right, above nor below"
                return f"found {name!r} {where} {other!r}"
    return None


def evaluate(requirements: Sequence[Requirement], detected: Mapping[str, Sequence[Detection]]) -> list[RuleResult]:
    """Every rule of every requirement, on the detections that count (``kept``, by class name), as GenEval's
    evaluate() decides them.

    - at least ``count``: the ``count`` most confident detections exist;
    - colour: CLIP's colour of each of those is the colour asked for (all of them: GenEval's colours.count(c) >=
      count, on exactly those);
    - position: each of those is in the relation to each of the other object's ``count`` most confident, and the
      other object met its own count and colour rules (else "no target"), judged only when this object met its own;
    - at most ``most``: no more detections than that (GenEval's exclude).
    """
    found = {r.name: list(detected.get(r.name, ()))[: r.count] for r in requirements}
    results: list[RuleResult] = []
    matched: dict[str, bool] = {}  # by class name: its count and colour rules met (GenEval's matched_groups)
    for index, req in enumerate(requirements):
        ok = True
        have = found[req.name]
        if req.count >= 1:
            ok = len(have) >= req.count
            results.append(RuleResult(index, "count", ok, f"at least {req.count} {req.name!r}", _found(req.name, have)))
        if req.color is not None:
            text = f"{'the' if req.count == 1 else f'all {req.count}'} {req.name!r} {req.color}"
            if not ok:
                results.append(RuleResult(index, "color", False, text, f"not judged: too few {req.name!r}"))
            else:
                colors = [d.color for d in have]
                ok = colors.count(req.color) >= req.count
                seen = ", ".join(f"{d.color} ({max(d.color_probs):.2f})" for d in have)
                results.append(RuleResult(index, "color", ok, text, f"CLIP sees {seen}"))
        matched[req.name] = ok
    for index, req in enumerate(requirements):
        if req.position is None:
            continue
        relation, other = req.position
        text = f"{req.name!r} {relation} {other!r}"
        if not matched[req.name]:
            # GenEval judges the position only of an object found as asked; here the rule counts as not met.
            results.append(RuleResult(index, "position", False, text, f"not judged: {req.name!r} not found as asked"))
        elif not matched.get(other, False):
            results.append(RuleResult(index, "position", False, text, f"no {other!r} as asked to place it against"))
        else:
            failure = _misplaced(req.name, relation, other, found[req.name], found[other])
            results.append(RuleResult(index, "position", failure is None, text, failure or f"found {relation}"))
    for index, req in enumerate(requirements):
        most = req.most
        if most is None:
            continue
        every = list(detected.get(req.name, ()))
        passed = len(every) <= most
        if most == 0:
            text = f"no {req.name!r}"
            reason = "found none" if passed else f"{_found(req.name, every)} where none should be"
        else:
            text = f"at most {most} {req.name!r}"
            reason = _found(req.name, every)
        results.append(RuleResult(index, "max_count", passed, text, reason))
    return sorted(results, key=lambda r: r.index)
