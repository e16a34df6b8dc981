"""The `objects:` judge: objects counted, coloured and placed by an open-vocabulary detector, by GenEval's rules.

This module is the pytest plugin (entry point t2i_objects): the judge, its `object_detector` fixture and the
--t2i-detector-model option. The section's format is harness.judging.objects_check, the rules
harness.judging.geneval_rules, the model harness.judging.object_detector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from harness.judging.geneval_rules import COLORS, MAX_OBJECTS, RELATIONS, Detection, RuleResult, evaluate, kept
from harness.judging.judge import Judge, Score, Table, TableRow, Verdict
from harness.judging.object_detector import DEFAULT_DETECTOR, DetectorQuery, decode_row, encode_row
from harness.judging.objects_check import KEYS, SECTION, ObjectsCheck, check_to_yaml, parse_objects
from harness.pytest_plugin.options import OptionSpec, add_option, model_ref

if TYPE_CHECKING:
    from PIL import Image

    from harness.cases.case_file import Case, Problem, SectionReader
    from harness.judging.object_detector import ObjectDetector

TITLE = "Objects"
DETECTOR_OPTION = OptionSpec(
    "--t2i-detector-model",
    "t2i_detector_model",
    DEFAULT_DETECTOR,
    "open-vocabulary object detector for `objects:` checks (OWLv2, OWL-ViT or Grounding DINO): hub repo id or "
    "local dir",
    "ID_OR_DIR",
    True,
)
_SHOWN_BELOW = 3  # the most below-threshold candidates a missing object's lines show


# ---------------------------------------------------------------------------------------------
# The verdict.


def objects_verdict(check: ObjectsCheck, candidates: dict[str, list[Detection]]) -> Verdict:
    """The verdict of the check on one image's candidates (object_detector.decode_row)."""
    threshold = check.confidence
    ranked = {name: kept(candidates.get(name, []), -1.0, MAX_OBJECTS, check.max_overlap) for name in check.names}
    counted = {name: [d for d in ranked[name] if d.score > threshold] for name in check.names}
    results = evaluate(check.requirements, counted)
    passed = all(r.passed for r in results)
    written = check_to_yaml(check)
    return Verdict(
        title=TITLE,
        passed=passed,
        scores=_scores(check, ranked, results),
        table=_table(check, ranked, counted, results),
        explanation="" if passed else _explain(check, ranked, counted, results),
        details={
            "objects": written,
            "threshold": threshold,
            "max_overlap": check.max_overlap,
            "detections": {name: [_detection_json(d, d in counted[name]) for d in ranked[name]] for name in ranked},
            "rules": [
                {
                    "object": check.requirements[r.index].name,
                    "rule": r.kind,
                    "passed": r.passed,
                    "text": r.text,
                    "reason": r.reason,
                }
                for r in results
            ],
        },
        comparable=json.dumps(written, sort_keys=True),
        comparable_what="objects check",
    )


def _scores(check: ObjectsCheck, ranked: dict[str, list[Detection]], results: list[RuleResult]) -> tuple[Score, ...]:
    """The share of rules met first; then how close the image is to losing a wanted object or counting an
    unwanted one, in the detector's confidence (before the threshold, after the overlap rule)."""
    met = sum(r.passed for r in results) / len(results)
    # A 0-1 step per rule: a drop beyond any tolerance is a rule newly broken, even on a failing item.
    scores = [Score("rules", met, "Objects rules met", gated=True, what="share of object rules met")]
    wanted = [
        ranked[r.name][r.count - 1].score if len(ranked[r.name]) >= r.count else 0.0
        for r in check.requirements
        if r.count
    ]
    if wanted:
        # Detector confidences are not calibrated probabilities: shown and compared, never gated.
        scores.append(
            Score("weakest", min(wanted), "Objects weakest wanted", what="weakest wanted object's confidence")
        )
    excess = [
        ranked[r.name][r.most].score if len(ranked[r.name]) > r.most else 0.0
        for r in check.requirements
        if r.most is not None
    ]
    if excess:
        what = "strongest object beyond a maximum's confidence"
        scores.append(Score("excess", max(excess), "Objects strongest excess", better="lower", what=what))
    return tuple(scores)


def _detection_json(detection: Detection, counted: bool) -> dict[str, Any]:
    found: dict[str, Any] = {"score": detection.score, "box": list(detection.box), "counted": counted}
    if detection.color_probs:
        found["color"] = detection.color
        found["color_probs"] = dict(zip(COLORS, detection.color_probs, strict=True))
    return found


def _box(box: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(str(round(v)) for v in box) + ")"  # whole pixels; never "-0"


def _color(detection: Detection) -> str:
    return f"{detection.color} {max(detection.color_probs):.2f}" if detection.color_probs else ""


def _shown_detections(
    check: ObjectsCheck, ranked: dict[str, list[Detection]], counted: dict[str, list[Detection]]
) -> list[tuple[str, Detection, bool]]:
    """(class, detection, counted): every counted one, and a wanted object's best below the threshold when too
    few were counted (what the detector nearly found)."""
    shown: list[tuple[str, Detection, bool]] = []
    for req in check.requirements:
        have = counted[req.name]
        shown.extend((req.name, d, True) for d in have)
        missing = req.count - len(have)
        if missing > 0:
            below = [d for d in ranked[req.name] if d not in have][: min(missing, _SHOWN_BELOW)]
            shown.extend((req.name, d, False) for d in below)
    return shown


def _table(
    check: ObjectsCheck,
    ranked: dict[str, list[Detection]],
    counted: dict[str, list[Detection]],
    results: list[RuleResult],
) -> Table:
    rows = [
        TableRow(("pass" if r.passed else "FAIL", r.text, r.reason), ("rule-passed" if r.passed else "rule-failed",))
        for r in results
    ]
    for name, detection, is_counted in _shown_detections(check, ranked, counted):
        where = _box(detection.box) + (f" {_color(detection)}" if detection.color_probs else "")
        rows.append(TableRow((f"{detection.score:.2f}", name, where), ("counted" if is_counted else "below",)))
    return Table(tuple(rows), note=_settings(check))


def _settings(check: ObjectsCheck) -> str:
    note = f"counted above confidence {check.confidence:g}"
    if check.max_overlap < 1:
        note += f", boxes overlapping by IoU {check.max_overlap:g} or more merged"
    return note


def _explain(
    check: ObjectsCheck,
    ranked: dict[str, list[Detection]],
    counted: dict[str, list[Detection]],
    results: list[RuleResult],
) -> str:
    failed = [r for r in results if not r.passed]
    lines = [f"Objects: {len(failed)} of {len(results)} rules not met ({_settings(check)}):"]
    lines.extend(f"  {r.text}: {r.reason}" for r in failed)
    shown = _shown_detections(check, ranked, counted)
    if shown:
        width = max(len("class"), *(len(name) for name, _, _ in shown))
        lines.append(f"  {'class':{width}}  score  box (x0, y0, x1, y1)")
        for name, detection, is_counted in shown:
            note = _color(detection) if is_counted else f"below {check.confidence:g}, not counted"
            lines.append(f"  {name:{width}}  {detection.score:5.2f}  {_box(detection.box)}  {note}".rstrip())
    else:
        lines.append("  nothing detected above the threshold")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The judge.


class ObjectsJudge(Judge[ObjectsCheck, "ObjectDetector"]):
    section = SECTION
    title = TITLE
    fixture = "object_detector"
    keys = KEYS
    list_key = "expect"
    missing_hint = "add 'objects:' with a list of objects, e.g. objects: [{class: dog, count: 1}]"

    def parse(self, section: SectionReader) -> ObjectsCheck | None:
        return parse_objects(section)

    def query(self, check: ObjectsCheck) -> Any:
        return DetectorQuery(check.names, check.colored).to_json()

    def feature_length(self, model: ObjectDetector, query: Any = None) -> int | None:
        return DetectorQuery.from_json(query).row_length

    def cache_identity(self, model: ObjectDetector) -> dict[str, str] | None:
        return model.cache_identity

    def features(
        self, model: ObjectDetector, images: Sequence[Image.Image], queries: Sequence[Any] = ()
    ) -> list[list[float]]:
        parsed = [DetectorQuery.from_json(query) for query in queries]
        return [encode_row(q, found) for q, found in zip(parsed, model.detect(images, parsed), strict=True)]

    def verdict(self, model: ObjectDetector, check: ObjectsCheck, row: Any) -> Verdict:
        return objects_verdict(check, decode_row(DetectorQuery(check.names, check.colored), row))

    def problems(self, check: ObjectsCheck, case: Case, model: ObjectDetector) -> list[Problem]:
        return overlong_name_problems(model, check, case)


def overlong_name_problems(model: ObjectDetector, check: ObjectsCheck, case: Case) -> list[Problem]:
    """Class names the detector cannot read whole: OWL reads each name in at most its tokenizer's length (16
    tokens), Grounding DINO all of them as one sentence of at most max_text_len tokens (256)."""
    from harness.cases.case_file import Problem
    from harness.generation.prompt_length import token_count
    from harness.judging.object_detector import grounding_text

    tokenizer = getattr(model.processor, "tokenizer", None)
    if tokenizer is None:
        return []
    lines = check.lines or (case.line,) * len(check.names)
    if model.architecture == "owl":
        # The text encoder's positions are the real limit (16); the processor pads every name to the tokenizer's.
        text_config = getattr(model.model.config, "text_config", None)
        limit = int(getattr(text_config, "max_position_embeddings", 0) or getattr(tokenizer, "model_max_length", 0))
        problems = []
        for name, line in zip(check.names, lines, strict=True):
            count = token_count(tokenizer, name)
            if 0 < limit < count:
                problems.append(
                    Problem(
                        line,
                        f"object {name!r} is {count} tokens; the detector reads at most {limit} per class name "
                        "(start and end tokens included): shorten it",
                        case.id,
                    )
                )
        return problems
    limit = int(getattr(model.model.config, "max_text_len", 0) or 0)
    count = token_count(tokenizer, grounding_text(check.names))
    if 0 < limit < count:
        return [
            Problem(
                lines[0],
                f"the class names make {count} tokens together; Grounding DINO reads at most {limit}: use fewer or "
                "shorter names",
                case.id,
            )
        ]
    return []


@pytest.hookimpl
def pytest_t2i_judges(config: pytest.Config) -> list[Judge[Any, Any]]:
    return [ObjectsJudge()]


# ---------------------------------------------------------------------------------------------
# The option and the model, as a session fixture.


def pytest_addoption(parser: pytest.Parser) -> None:
    add_option(parser, DETECTOR_OPTION)


def pytest_configure(config: pytest.Config) -> None:
    from harness.pytest_plugin.options import given

    value, where, _ = given(config, DETECTOR_OPTION.ini, DETECTOR_OPTION.flag)
    if not str(value).strip():
        raise pytest.UsageError(f"{where} is empty; give a value or leave the option out.")


def detector_ref(config: pytest.Config) -> str:
    """--t2i-detector-model as a local dir (a relative ini value is relative to the ini file) or a hub id."""
    return model_ref(config, DETECTOR_OPTION)


def detector_identity(settings: Any, ref: str, architecture: str, model: Any, clip: Any) -> dict[str, str] | None:
    """What the rows depend on: the detector (weights, processor config), the row format, and CLIP's image tower
    with GenEval's colour prompts (a coloured class's probabilities)."""
    from harness.common.model_loading import hub_revision
    from harness.judging.geneval_rules import COLOR_TEMPLATES
    from harness.judging.object_detector import ROW_FORMAT
    from harness.judging.score_cache import pretrained_identity

    clip_identity = getattr(clip, "cache_identity", None)
    if clip_identity is None:  # a CLIP from a conftest.py override: no safe key for the colours
        return None
    return pretrained_identity(
        "objects detections",
        ref,
        hub_revision(ref, "config.json"),
        model.dtype,
        settings.device,
        row_format=ROW_FORMAT,
        architecture=architecture,
        max_objects=str(MAX_OBJECTS),
        color_prompts=json.dumps([COLORS, COLOR_TEMPLATES]),
        clip=json.dumps(clip_identity, sort_keys=True),
    )


@pytest.fixture(scope="session")
def object_detector(pytestconfig: pytest.Config, t2i_settings: Any, clip_scorer: Any) -> ObjectDetector:
    """The open-vocabulary detector (--t2i-detector-model) with the session's CLIP for colours.

    ``object_detector.detect(images, [DetectorQuery(("dog", "teddy bear"))])`` -> per image, per class, the
    most confident boxes (harness.judging.geneval_rules.Detection).
    """
    from harness.pytest_plugin.availability import offline_reason_for
    from harness.pytest_plugin.session_state import note_model

    ref = detector_ref(pytestconfig)
    detector = build_object_detector(t2i_settings, ref, clip_scorer, offline_reason_for(pytestconfig, ref))
    note_model(pytestconfig, detector.info)
    return detector


def build_object_detector(settings: Any, ref: str, clip: Any, offline_reason: str | None) -> ObjectDetector:
    """The detector as the session fixture builds it (and a Ray actor, on its own node), with ``clip`` for colours."""
    from harness.judging.object_detector import ObjectDetector, load_detector

    model, processor, architecture, info = load_detector(ref, settings.device, settings.dtype, offline_reason)
    return ObjectDetector(
        model=model,
        processor=processor,
        architecture=architecture,
        clip=clip,
        device=settings.device,
        info=info,
        cache_identity=detector_identity(settings, ref, architecture, model, clip),
    )


# COLORS and RELATIONS: GenEval's vocabulary, for `python -m harness import geneval`.
__all__ = ["COLORS", "RELATIONS", "ObjectsJudge", "object_detector", "objects_verdict", "pytest_t2i_judges"]
