"""The `objects:` judge: GenEval's rules on constructed boxes, the section's validation in check mode, the
detector's rows against a direct transformers computation, and runs end to end on tiny random-weight detectors.

Random weights put boxes anywhere, so the end-to-end verdicts are made certain by the threshold, not by the boxes:
every box scores above 0.0 (a sigmoid), none above 1.0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from conftest import case_yaml
from harness.cases.case_file import load_case_file
from harness.judging.geneval_rules import (
    COLORS,
    COUNTING_THRESHOLD,
    POSITION_THRESHOLD,
    RELATIONS,
    THRESHOLD,
    Detection,
    Requirement,
    color_of,
    default_threshold,
    evaluate,
    iou,
    kept,
    relative_position,
)
from harness.judging.objects import ObjectsJudge, objects_verdict
from harness.judging.objects_check import check_to_yaml
from tiny_detector import TinyDetectors, build_tiny_detectors
from tiny_models import TinyModels


def box(x0: float, y0: float, x1: float, y1: float, score: float = 0.5, colors: tuple[float, ...] = ()) -> Detection:
    return Detection(score, (x0, y0, x1, y1), colors)


def one_hot(color: str, p: float = 0.9) -> tuple[float, ...]:
    rest = (1 - p) / (len(COLORS) - 1)
    return tuple(p if c == color else rest for c in COLORS)


# -- which detections count ---------------------------------------------------------------------------------------


def test_a_detection_counts_strictly_above_the_threshold_and_at_most_max_objects() -> None:
    candidates = [box(0, 0, 10, 10, score=s) for s in (0.2, 0.3, 0.31, 0.9)]
    assert [d.score for d in kept(candidates, THRESHOLD)] == [0.9, 0.31]  # 0.3 itself does not count
    assert [d.score for d in kept(candidates, 0.0, max_objects=3)] == [0.9, 0.31, 0.3]
    assert kept(candidates, 1.0) == []  # a sigmoid never exceeds 1


def test_overlapping_boxes_merge_only_when_max_overlap_is_below_one() -> None:
    a, b, c = box(0, 0, 9, 9, 0.9), box(0, 0, 9, 9, 0.8), box(5, 0, 14, 9, 0.7)
    assert iou(a.box, b.box) == 1.0
    # GenEval's whole-pixel areas: 10x10 boxes sharing 5x10 pixels.
    assert iou(a.box, c.box) == pytest.approx(50 / 150)
    assert kept([a, b, c], 0.0) == [a, b, c]  # GenEval's default 1.0: no suppression, even of equal boxes
    assert kept([a, b, c], 0.0, max_overlap=0.5) == [a, c]
    assert kept([a, b, c], 0.0, max_overlap=50 / 150) == [a]  # an IoU equal to max_overlap is dropped
    assert kept([c, b, a], 0.0, max_overlap=0.5) == [a, c]  # the most confident suppresses, whatever the order


def test_the_counting_threshold_applies_to_checks_that_count() -> None:
    assert default_threshold([Requirement("dog"), Requirement("cat", color="red")]) == THRESHOLD == 0.3
    assert default_threshold([Requirement("clock", 2)]) == COUNTING_THRESHOLD == 0.9
    assert default_threshold([Requirement("clock", 1, max_count=1)]) == COUNTING_THRESHOLD
    assert default_threshold([Requirement("dog"), Requirement("text", 0)]) == THRESHOLD  # absent is no count


# -- colour and position ------------------------------------------------------------------------------------------


def test_the_colour_is_clips_highest_probability_and_a_tie_goes_to_the_first() -> None:
    assert color_of(one_hot("purple")) == "purple"
    tie = [0.0] * len(COLORS)
    tie[COLORS.index("blue")] = tie[COLORS.index("black")] = 0.5
    assert color_of(tie) == "blue"
    with pytest.raises(ValueError, match="10"):
        color_of([1.0, 0.0])


@pytest.mark.parametrize(
    ("a", "relations"),
    [
        ((50, 0, 60, 10), {"right of"}),
        ((-60, 0, -50, 10), {"left of"}),
        ((0, -60, 10, -50), {"above"}),  # y grows downwards
        ((0, 50, 10, 60), {"below"}),
        ((50, 50, 60, 60), {"right of", "below"}),  # 45 degrees: both shares are 0.71 > 0.5
        ((0, 0, 10, 10), set()),  # touching centres: nowhere
    ],
)
def test_each_relation_from_box_centres(a: tuple[float, ...], relations: set[str]) -> None:
    assert relative_position(a, (0, 0, 10, 10)) == relations  # type: ignore[arg-type]


def test_an_offset_within_genevals_minimum_is_no_relation() -> None:
    # Two 10-pixel boxes: 0.1 * (10 + 10) = 2 pixels of the offset do not count, and what is left must be more
    # than half the offset: along an axis, more than 4 pixels.
    target = (0.0, 0.0, 10.0, 10.0)
    assert POSITION_THRESHOLD == 0.1
    assert relative_position((2.0, 0.0, 12.0, 10.0), target) == set()  # nothing left of the offset
    assert relative_position((4.0, 0.0, 14.0, 10.0), target) == set()  # exactly half left
    assert relative_position((4.1, 0.0, 14.1, 10.0), target) == {"right of"}  # just past it
    assert relative_position((0.0, -4.1, 10.0, 5.9), target) == {"above"}
    # Off the axis, the share left after the minimum decides: 5 px right and 4 px down leave 3 and 2 px of 6.4.
    assert relative_position((5.0, 4.0, 15.0, 14.0), target) == set()
    assert relative_position((8.0, 3.0, 18.0, 13.0), target) == {"right of"}


# -- the rules ----------------------------------------------------------------------------------------------------


def rules(requirements: list[Requirement], detected: dict[str, list[Detection]]) -> list[tuple[str, bool, str]]:
    return [(r.kind, r.passed, r.reason) for r in evaluate(requirements, detected)]


def test_count_means_at_least_and_max_count_at_most() -> None:
    two = [box(0, 0, 5, 5, 0.95), box(20, 0, 25, 5, 0.93)]
    three = [*two, box(40, 0, 45, 5, 0.91)]
    exactly_two = [Requirement("clock", 2, max_count=2)]
    assert rules(exactly_two, {"clock": two}) == [
        ("count", True, "found 2 'clock' (0.95, 0.93)"),
        ("max_count", True, "found 2 'clock' (0.95, 0.93)"),
    ]
    assert rules(exactly_two, {"clock": three})[1] == ("max_count", False, "found 3 'clock' (0.95, 0.93, 0.91)")
    assert rules(exactly_two, {"clock": two[:1]})[0] == ("count", False, "found 1 'clock' (0.95)")
    assert rules([Requirement("clock", 2)], {"clock": three}) == [("count", True, "found 2 'clock' (0.95, 0.93)")]


def test_an_absent_object_fails_on_any_detection() -> None:
    absent = [Requirement("text", 0)]
    assert rules(absent, {}) == [("max_count", True, "found none")]
    found = {"text": [box(0, 0, 5, 5, 0.41), box(9, 9, 19, 19, 0.35)]}
    assert rules(absent, found) == [("max_count", False, "found 2 'text' (0.41, 0.35) where none should be")]


def test_the_colour_rule_looks_at_the_count_most_confident_only() -> None:
    glasses = {"wine glass": [box(0, 0, 5, 5, 0.9, one_hot("purple")), box(9, 0, 14, 5, 0.8, one_hot("red"))]}
    assert rules([Requirement("wine glass", color="purple")], glasses)[1][:2] == ("color", True)
    outcome = rules([Requirement("wine glass", 2, color="purple")], glasses)[1]
    assert outcome == ("color", False, "CLIP sees purple (0.90), red (0.90)")
    # Too few objects: the colour is not judged, and counts as not met.
    assert rules([Requirement("wine glass", color="purple")], {}) == [
        ("count", False, "found no 'wine glass'"),
        ("color", False, "not judged: too few 'wine glass'"),
    ]


def test_a_position_compares_every_object_with_every_target() -> None:
    bear, dog = box(0, 0, 10, 10, 0.9), box(50, 0, 60, 10, 0.8)
    checks = [Requirement("teddy bear"), Requirement("dog", position=("right of", "teddy bear"))]
    assert rules(checks, {"teddy bear": [bear], "dog": [dog]})[2] == ("position", True, "found right of")
    assert rules(checks, {"teddy bear": [dog], "dog": [bear]})[2] == (
        "position",
        False,
        "found 'dog' left of 'teddy bear'",
    )
    assert rules(checks, {"dog": [dog]})[2] == ("position", False, "no 'teddy bear' as asked to place it against")
    assert rules(checks, {"teddy bear": [bear]})[2] == ("position", False, "not judged: 'dog' not found as asked")
    # Two dogs asked for: the second one, on the bear's left, breaks the rule.
    two = [Requirement("teddy bear"), Requirement("dog", 2, position=("right of", "teddy bear"))]
    dogs = [dog, box(-60, 0, -50, 10, 0.7)]
    assert rules(two, {"teddy bear": [bear], "dog": dogs})[2][:2] == ("position", False)


# -- the verdict --------------------------------------------------------------------------------------------------


def parse(tmp_path: Path, objects: str) -> Any:
    path = tmp_path / "case.yaml"
    path.write_text(f"cases:\n  - id: c\n    prompt: p\n    objects: {objects}\n")
    (case,) = load_case_file(path, [ObjectsJudge()])
    return case.checks["objects"]


def test_the_verdict_lists_failed_rules_and_the_detections(tmp_path: Path) -> None:
    check = parse(tmp_path, "[{class: dog}, {class: text, count: 0}]")
    found = {"dog": [box(1, 2, 30, 40, 0.2)], "text": [box(0, 0, 5, 5, 0.41), box(9, 9, 19, 19, 0.35)]}
    verdict = objects_verdict(check, found)
    assert not verdict.passed
    assert [(s.name, s.value) for s in verdict.scores] == [("rules", 0.0), ("weakest", 0.2), ("excess", 0.41)]
    assert verdict.scores[0].gated and verdict.scores[2].better == "lower"
    assert verdict.explanation.splitlines() == [
        "Objects: 2 of 2 rules not met (counted above confidence 0.3):",
        "  at least 1 'dog': found no 'dog'",
        "  no 'text': found 2 'text' (0.41, 0.35) where none should be",
        "  class  score  box (x0, y0, x1, y1)",
        "  dog     0.20  (1, 2, 30, 40)  below 0.3, not counted",
        "  text    0.41  (0, 0, 5, 5)",
        "  text    0.35  (9, 9, 19, 19)",
    ]
    assert [row.cells for row in verdict.table.rows][:2] == [
        ("FAIL", "at least 1 'dog'", "found no 'dog'"),
        ("FAIL", "no 'text'", "found 2 'text' (0.41, 0.35) where none should be"),
    ]
    json.dumps(verdict.details)  # results.json keeps it as it is
    assert verdict.details["detections"]["text"][0] == {"score": 0.41, "box": [0, 0, 5, 5], "counted": True}


def test_a_parsed_check_turns_back_into_its_yaml(tmp_path: Path) -> None:
    import yaml

    section = (
        "{expect: [{class: teddy bear}, {class: Dog, count: 2, max_count: 3, color: brown, "
        "position: [right of, Teddy  Bear]}], threshold: 0.5, max_overlap: 0.7}"
    )
    check = parse(tmp_path, section)
    assert check.requirements[1].position == ("right of", "teddy bear")  # spelled as the list spells it
    assert parse(tmp_path, json.dumps(check_to_yaml(check))) == check
    short = parse(tmp_path, "[{class: dog}]")
    assert check_to_yaml(short) == [{"class": "dog", "count": 1}]
    assert yaml.safe_dump(check_to_yaml(check))  # plain data


# -- check mode: the section's problems, with no model loaded -----------------------------------------------------

BAD_SECTIONS = """\
cases:
  - id: bad
    prompt: "a dog"
    objects:
      - {class: dog, count: -1}
      - {class: cat, colour: red}
      - {class: bird, color: purpel, position: [beside, dog]}
      - {class: car, count: 2, max_count: 1}
      - {class: 12}
      - dog
      - {class: Dog}
      - {class: clock, position: [left of, lamp]}
      - {class: text, count: 0, color: red}
  - id: bad-settings
    prompt: "a dog"
    objects: {expect: [{class: dog}], threshold: 1.5}
  - id: empty
    prompt: "a dog"
    objects: []
"""


def test_check_mode_reports_every_problem_of_an_objects_section_with_its_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", suite=BAD_SECTIONS)
    # A detector that does not exist: check mode never loads it.
    result = pytester.runpytest("suite.yaml", "--t2i-check", "--t2i-detector-model=no/such-detector")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    case = "  suite.yaml:{}: case '{}': "
    result.stdout.fnmatch_lines(
        [
            "suite.yaml: 12 problems in this case file:",
            case.format(5, "bad") + "object 'dog': 'count' must be from 0 to 16 (at least this many): the detector "
            "keeps at most 16 boxes of a class (GenEval's max_objects); got -1",
            case.format(6, "bad") + "unknown key 'colour' in object 2 (did you mean 'color'?); an object takes "
            "class, count, max_count, color, position",
            case.format(7, "bad") + "object 'bird': unknown colour 'purpel' (did you mean 'purple'?); use one of "
            "GenEval's colours: red, orange, yellow, green, blue, purple, pink, brown, black, white",
            case.format(7, "bad") + "object 'bird': unknown relation 'beside'; use one of GenEval's: left of, "
            "right of, above, below",
            case.format(8, "bad") + "object 'car': 'max_count' must be from 2 to 16 (at most this many): it cannot "
            "be below 'count' (2); got 1",
            case.format(9, "bad") + "object 5's 'class' must be text, but YAML reads 12 as the number 12; put it "
            'in quotes: "12"',
            case.format(10, "bad") + "object 6 must be a mapping such as {class: dog, count: 1}, got the text 'dog' "
            "(write {class: dog})",
            case.format(11, "bad") + "object 'Dog' is listed twice (also on line 5); one entry per class (for two "
            "of them write count: 2), so that a position can name it",
            case.format(12, "bad") + "object 'clock' is placed left of 'lamp', which is not an object of this list "
            "(the others are *); add {class: lamp} to the list, or name one of the others",
            case.format(13, "bad") + "object 'text': a colour needs an object to look at, and count 0 means "
            "absent: remove the colour",
            case.format(16, "bad-settings") + "'objects.threshold' must be a confidence in [0, 1], such as 0.3 (a "
            "detection counts above it); got the number 1.5",
            case.format(19, "empty") + "'objects' needs a list of objects, each a mapping such as {class: dog, "
            "count: 1} (or, in the mapping form, 'objects.expect: [...]'); got an empty list",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_check_mode_accepts_both_forms_and_needs_no_clip(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            """
            - id: short
              prompt: "a dog right of a teddy bear"
              objects:
                - {class: teddy bear, count: 1}
                - {class: dog, count: 1, position: [right of, teddy bear]}
                - {class: text, count: 0}
            - id: mapping
              prompt: "two clocks and a purple wine glass"
              objects:
                expect:
                  - {class: clock, count: 2, max_count: 2}
                  - {class: wine glass, color: purple}
                threshold: 0.9
            """
        ),
    )
    result = pytester.runpytest("suite.yaml", "--t2i-check", "--t2i-detector-model=no/such-detector")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()


# -- the detector's rows ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_detectors(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> TinyDetectors:
    """Built once; each also loaded and run once here, outside any pytester run, so that the transformers
    modules they import stay imported (pytester forgets the modules a run imported: see tests/conftest.py)."""
    detectors = build_tiny_detectors(tmp_path_factory.mktemp("tiny-detectors"))
    from harness.judging.object_detector import DetectorQuery

    for ref in (detectors.owl_dir, detectors.grounding_dino_dir):
        _detector(ref, tiny_models).detect(_images()[:1], [DetectorQuery(("dog",), ("dog",))])
    return detectors


def _images() -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(0)
    return [Image.fromarray((rng.rand(64, 48, 3) * 255).astype("uint8")) for _ in range(2)]


def _detector(ref: Path, tiny_models: TinyModels) -> Any:
    import torch

    from harness.common.model_loading import load_clip
    from harness.judging.clip import ClipScorer
    from harness.judging.object_detector import ObjectDetector, load_detector
    from harness.pytest_plugin.options import Settings

    settings = Settings(str(tiny_models.pipeline_dir), str(tiny_models.clip_dir), "", "cpu", "float32", Path())
    clip_model, clip_processor, clip_info = load_clip(settings)
    clip = ClipScorer(clip_model, clip_processor, "cpu", clip_info)
    model, processor, architecture, info = load_detector(str(ref), "cpu", torch.float32, None)
    return ObjectDetector(model, processor, architecture, clip, "cpu", info)


def _direct_colors(tiny_models: TinyModels, image: Any, boxes: list[tuple[float, ...]], name: str) -> Any:
    """GenEval's colour classifier by hand: CLIPModel on the box crops against three prompts per colour."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_models.clip_dir, use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(tiny_models.clip_dir)
    crops = []
    for x0, y0, x1, y1 in boxes:
        left, top = min(max(math.floor(x0), 0), 47), min(max(math.floor(y0), 0), 63)
        crop = (left, top, min(max(math.ceil(x1), left + 1), 48), min(max(math.ceil(y1), top + 1), 64))
        crops.append(image.crop(crop))
    templates = ("a photo of a {c} {o}", "a photo of a {c}-colored {o}", "a photo of a {c} object")
    prompts = [t.format(c=c, o=name) for c in COLORS for t in templates]
    with torch.no_grad():
        text = model.get_text_features(**processor(text=prompts, return_tensors="pt", padding=True)).pooler_output
        text = text / text.norm(dim=-1, keepdim=True)
        text = text.reshape(len(COLORS), 3, -1).mean(dim=1)
        text = text / text.norm(dim=-1, keepdim=True)
        pixels = processor(images=crops, return_tensors="pt")["pixel_values"]
        crops_embeds = model.get_image_features(pixel_values=pixels).pooler_output
        crops_embeds = crops_embeds / crops_embeds.norm(dim=-1, keepdim=True)
        return (model.logit_scale.exp() * crops_embeds @ text.t()).softmax(dim=1)


def test_owl_rows_equal_transformers_post_processing(tiny_detectors: TinyDetectors, tiny_models: TinyModels) -> None:
    import numpy as np
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    from harness.judging.object_detector import DetectorQuery, decode_row, encode_row

    detector = _detector(tiny_detectors.owl_dir, tiny_models)
    images, query = _images(), DetectorQuery(("dog", "teddy bear"), ("dog",))
    # Both images in one forward: the second's row must equal the computation on it alone.
    rows = [encode_row(q, f) for q, f in zip([query, query], detector.detect(images, [query, query]), strict=True)]
    decoded = decode_row(query, np.asarray(rows[1], dtype=np.float32))

    processor = AutoProcessor.from_pretrained(tiny_detectors.owl_dir)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(tiny_detectors.owl_dir).eval()
    inputs = processor(text=[["dog", "teddy bear"]], images=[images[1]], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    (direct,) = processor.post_process_grounded_object_detection(outputs, threshold=0.0, target_sizes=[(64, 48)])
    for label, name in enumerate(query.names):
        mine = direct["labels"] == label
        order = direct["scores"][mine].argsort(descending=True, stable=True)
        expected_scores = direct["scores"][mine][order][:16]
        expected_boxes = direct["boxes"][mine][order][:16]
        # Float32 throughout, the same operations on a batch of 2 rather than 1: equal within 1e-5.
        assert [d.score for d in decoded[name]] == pytest.approx(expected_scores.tolist(), abs=1e-5)
        np.testing.assert_allclose([d.box for d in decoded[name]], expected_boxes.reshape(-1, 4), atol=1e-4)
    assert sum(len(found) for found in decoded.values()) == 16  # one box a 16-pixel patch, each of one class
    dog_boxes = [d.box for d in decoded["dog"]]
    expected_colors = _direct_colors(tiny_models, images[1], dog_boxes, "dog")
    np.testing.assert_allclose([d.color_probs for d in decoded["dog"]], expected_colors, atol=1e-5)
    assert decoded["teddy bear"][0].color_probs == ()  # no colour asked of it


def test_grounding_dino_rows_score_each_class_by_its_own_words(
    tiny_detectors: TinyDetectors, tiny_models: TinyModels
) -> None:
    import numpy as np
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    from harness.judging.object_detector import DetectorQuery, decode_row, encode_row

    detector = _detector(tiny_detectors.grounding_dino_dir, tiny_models)
    assert detector.architecture == "grounding-dino"
    image, query = _images()[0], DetectorQuery(("dog", "teddy bear"))
    (found,) = detector.detect([image], [query])
    decoded = decode_row(query, np.asarray(encode_row(query, found), dtype=np.float32))

    processor = AutoProcessor.from_pretrained(tiny_detectors.grounding_dino_dir)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(tiny_detectors.grounding_dino_dir).eval()
    inputs = processor(images=[image], text="dog. teddy bear.", return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    (direct,) = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=-1.0, target_sizes=[(64, 48)]
    )
    # [CLS] dog . teddy bear . [SEP]: 'dog' is token 1, 'teddy bear' tokens 3 and 4.
    assert processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())[1:5] == [
        "dog",
        ".",
        "teddy",
        "bear",
    ]
    probs = outputs.logits[0].sigmoid()
    per_class = torch.stack([probs[:, 1], probs[:, 3:5].amax(dim=-1)], dim=-1)
    best, labels = per_class.max(dim=-1)
    for label, name in enumerate(query.names):
        mine = (labels == label).nonzero().flatten().tolist()
        mine.sort(key=lambda i: -float(best[i]))
        assert [d.score for d in decoded[name]] == pytest.approx([float(best[i]) for i in mine], abs=1e-5)
        np.testing.assert_allclose(
            np.reshape([d.box for d in decoded[name]], (-1, 4)), direct["boxes"][mine].reshape(-1, 4), atol=1e-4
        )


# -- runs end to end ----------------------------------------------------------------------------------------------


def _records(path: Path) -> dict[str, dict[str, Any]]:
    document = json.loads((path / "results.json").read_text())
    return {r["id"].split("::")[1].split("[")[0]: r for r in document["results"]}


def test_a_case_with_only_objects_passes_and_writes_its_section(
    pytester: pytest.Pytester, run_args: list[str], tiny_detectors: TinyDetectors
) -> None:
    body = [
        "- id: anything",
        '  prompt: "a dog"',
        "  objects: {expect: [{class: dog, count: 1}], threshold: 0.0}",
        "- id: placed",
        '  prompt: "a dog"',
        "  objects:",
        "    expect:",
        "      - {class: teddy bear}",
        "      - {class: dog, position: [right of, teddy bear]}",
        "    threshold: 0.0",
    ]
    for color in COLORS:
        body += [
            f"- id: dog-{color}",
            '  prompt: "a dog"',
            f"  objects: {{expect: [{{class: dog, color: {color}}}], threshold: 0.0}}",
        ]
    pytester.makefile(".yaml", suite=case_yaml("\n".join(body) + "\n"))
    result = pytester.runpytest("suite.yaml", *run_args, f"--t2i-detector-model={tiny_detectors.owl_dir}")
    records = _records(pytester.path / "reports")
    # Every box scores above 0, and each of them has one colour: exactly one of the ten colours passes.
    passed_colors = [c for c in COLORS if records[f"dog-{c}"]["outcome"] == "passed"]
    assert len(passed_colors) == 1, passed_colors
    section = records["anything"]["objects"]
    assert records["anything"]["outcome"] == "passed" and records["anything"]["clip"] is None
    assert section["title"] == "Objects" and section["passed"] is True
    assert {s["name"]: s["value"] for s in section["scores"]}["rules"] == 1.0
    assert section["details"]["threshold"] == 0.0 and len(section["details"]["detections"]["dog"]) == 16
    # The position rule agrees with GenEval's relative_position on the boxes results.json records.
    placed = records["placed"]["objects"]["details"]
    dog, bear = placed["detections"]["dog"][0]["box"], placed["detections"]["teddy bear"][0]["box"]
    rule = next(r for r in placed["rules"] if r["rule"] == "position")
    assert rule["passed"] == ("right of" in relative_position(dog, bear))
    result.assert_outcomes(passed=2 + int(rule["passed"]), failed=9 + int(not rule["passed"]))


def test_a_failing_case_prints_its_rules_and_detections_without_a_traceback(
    pytester: pytest.Pytester, run_args: list[str], tiny_detectors: TinyDetectors
) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            """
            - id: no-text
              prompt: "a dog"
              objects: {expect: [{class: text, count: 0}], threshold: 0.0}
            - id: no-dog
              prompt: "a dog"
              objects: {expect: [{class: dog}], threshold: 1.0}
            - id: long-name
              prompt: "a dog"
              objects: [{class: dog}, {class: a dog with a long and curly tail}]
            """
        ),
    )
    result = pytester.runpytest("suite.yaml", *run_args, f"--t2i-detector-model={tiny_detectors.owl_dir}")
    result.assert_outcomes(failed=3)
    # The tiny tokenizer has few merges: this name is far more than the 16 tokens OWLv2's text encoder reads.
    result.stdout.fnmatch_lines(
        [
            "image not scored: suite.yaml:14: case 'long-name': object 'a dog with a long and curly tail' is * "
            "tokens; the detector "
            "reads at most 16 per class name (start and end tokens included): shorten it"
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "suite.yaml:*: case 'no-text', seed 0",
            "Objects: 1 of 1 rules not met (counted above confidence 0):",
            "  no 'text': found 16 'text' (1.00, *) where none should be",
            "  class  score  box (x0, y0, x1, y1)",
            "  text    1.00  (*, *, *, *)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "Objects: 1 of 1 rules not met (counted above confidence 1):",
            "  at least 1 'dog': found no 'dog'",
            "  class  score  box (x0, y0, x1, y1)",
            "  dog     1.00  (*)  below 1, not counted",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_a_bad_detector_is_one_paragraph_naming_the_option(
    pytester: pytest.Pytester, model_args: list[str], tiny_models: TinyModels
) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            """
            - id: dog
              prompt: "a dog"
              objects: [{class: dog}]
            """,
            seeds="[0, 1]",
        ),
    )
    result = pytester.runpytest("suite.yaml", *model_args, "--t2i-detector-model=./models/no-detector")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*The object detector './models/no-detector' (--t2i-detector-model) looks like a local directory, but "
            "it does not exist*"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    not_a_detector = pytester.runpytest("suite.yaml", *model_args, f"--t2i-detector-model={tiny_models.clip_dir}")
    not_a_detector.stdout.fnmatch_lines(
        [
            "*The object detector '*clip' (--t2i-detector-model) is a 'clip' model, not an open-vocabulary detector "
            "the objects judge reads. Point --t2i-detector-model at an OWLv2, OWL-ViT or Grounding DINO checkpoint*"
        ]
    )
    empty = pytester.runpytest("suite.yaml", "--t2i-check", "--t2i-detector-model=")
    assert empty.ret == pytest.ExitCode.USAGE_ERROR
    empty.stderr.fnmatch_lines(["*--t2i-detector-model is empty; give a value or leave the option out."])


def test_the_relations_and_colours_are_genevals() -> None:
    assert RELATIONS == ("left of", "right of", "above", "below")
    assert COLORS == ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
