"""The objects judge's model: an open-vocabulary detector from transformers, and CLIP for the colour of its boxes.

``detect`` runs the detector with each image's own class names and keeps, per class, the MAX_OBJECTS most
confident boxes whatever their confidence (the case's threshold and overlap rule are applied later, from the
cached row, so editing them reruns nothing); a class whose colour is asked about gets CLIP's colour
probabilities for each of those boxes. ``encode_row``/``decode_row`` keep all of it in one fixed-length row.

Two architectures, whose transformers post-processing differs:

- OWLv2 and OWL-ViT score every box against each class name separately; ``post_process_grounded_object_detection``
  gives each box its best class (an index into the names) and that class's sigmoid score.
- Grounding DINO reads the names as one sentence ("a dog. a teddy bear.") and scores every box against every
  token; its post-processing returns the words above a threshold as text, which can merge names. Here a box's
  score for a class is its highest token probability within that class's words, and its class the best one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.judging.geneval_rules import COLOR_TEMPLATES, COLORS, MAX_OBJECTS, Box, Detection

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from harness.common.model_loading import ModelInfo
    from harness.judging.clip import ClipScorer

ROLE = "object detector"
OPTION = "--t2i-detector-model"
DEFAULT_DETECTOR = "google/owlv2-base-patch16-ensemble"
# transformers model_type -> how its outputs are read
ARCHITECTURES = {"owlv2": "owl", "owlvit": "owl", "grounding-dino": "grounding-dino"}
ROW_FORMAT = "1"  # bump when encode_row changes
_SLOT = 5  # score, x0, y0, x1, y1
_EMPTY = -1.0  # the score of an unused slot (a detector's scores are in [0, 1])


@dataclass(frozen=True)
class DetectorQuery:
    """What the rows of one image depend on: the class names, and which of them get a colour."""

    names: tuple[str, ...]
    colored: tuple[str, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        return {"classes": list(self.names), "colors": list(self.colored)}

    @classmethod
    def from_json(cls, data: Any) -> DetectorQuery:
        return cls(tuple(data["classes"]), tuple(data.get("colors", ())))

    @property
    def row_length(self) -> int:
        return len(self.names) * MAX_OBJECTS * _SLOT + len(self.colored) * MAX_OBJECTS * len(COLORS)


def encode_row(query: DetectorQuery, candidates: dict[str, list[Detection]]) -> list[float]:
    """Per class (in the query's order): MAX_OBJECTS slots of score and box, unused ones scored -1; then, per
    coloured class, each slot's colour probabilities (zeros for unused slots)."""
    row: list[float] = []
    for name in query.names:
        found = candidates.get(name, [])[:MAX_OBJECTS]
        for detection in found:
            row.extend((detection.score, *detection.box))
        row.extend([_EMPTY, 0.0, 0.0, 0.0, 0.0] * (MAX_OBJECTS - len(found)))
    for name in query.colored:
        found = candidates.get(name, [])[:MAX_OBJECTS]
        for detection in found:
            row.extend(detection.color_probs or [0.0] * len(COLORS))
        row.extend([0.0] * len(COLORS) * (MAX_OBJECTS - len(found)))
    return row


def decode_row(query: DetectorQuery, row: Sequence[float]) -> dict[str, list[Detection]]:
    """encode_row's candidates back: per class, most confident first."""
    if len(row) != query.row_length:
        raise ValueError(f"a row of {len(row)} numbers for a query that needs {query.row_length}")
    values = [float(v) for v in row]
    colors_at = len(query.names) * MAX_OBJECTS * _SLOT
    color_index = {name: index for index, name in enumerate(query.colored)}
    decoded: dict[str, list[Detection]] = {}
    for index, name in enumerate(query.names):
        detections = []
        for slot in range(MAX_OBJECTS):
            at = (index * MAX_OBJECTS + slot) * _SLOT
            score = values[at]
            if score == _EMPTY:
                break
            probs: tuple[float, ...] = ()
            if name in color_index:
                start = colors_at + (color_index[name] * MAX_OBJECTS + slot) * len(COLORS)
                probs = tuple(values[start : start + len(COLORS)])
            box: Box = (values[at + 1], values[at + 2], values[at + 3], values[at + 4])
            detections.append(Detection(score, box, probs))
        decoded[name] = detections
    return decoded


@dataclass
class ObjectDetector:
    """A zero-shot detector + processor, and the session's CLIP for colours.

    Example::

        def test_two_clocks(object_detector, t2i_pipeline):
            image = t2i_pipeline("two clocks on a wall").images[0]
            (found,) = object_detector.detect([image], [DetectorQuery(("clock",))])
            assert len([d for d in found["clock"] if d.score > 0.3]) >= 2
    """

    model: Any
    processor: Any
    architecture: str  # "owl" or "grounding-dino" (ARCHITECTURES)
    clip: ClipScorer
    device: str
    info: ModelInfo
    # Set by the plugin's own fixture only: what the score cache knows the rows by.
    cache_identity: dict[str, str] | None = None
    _color_text: dict[str, Any] = field(default_factory=dict, repr=False)  # class name -> colour classifier

    def detect(
        self, images: Sequence[Image.Image], queries: Sequence[DetectorQuery]
    ) -> list[dict[str, list[Detection]]]:
        """Per image, its query's classes' candidates: the MAX_OBJECTS most confident boxes of each, whatever
        their confidence, with colour probabilities for the coloured classes.

        Images that share a query and a size run in one forward; others in their own, so that a row never
        depends on which other images shared its batch (batches pad their texts and pixels to a common size).
        """
        results: list[dict[str, list[Detection]] | None] = [None] * len(images)
        groups: dict[tuple[DetectorQuery, tuple[int, int]], list[int]] = {}
        for index, (image, query) in enumerate(zip(images, queries, strict=True)):
            groups.setdefault((query, image.size), []).append(index)
        for (query, _), indices in groups.items():
            batch = [images[i].convert("RGB") for i in indices]
            found = self._boxes(batch, query.names)
            for i, image, candidates in zip(indices, batch, found, strict=True):
                results[i] = self._with_colors(image, query, candidates)
        return [result or {} for result in results]

    # -- boxes --------------------------------------------------------------------------------------------------

    def _boxes(self, images: list[Image.Image], names: tuple[str, ...]) -> list[dict[str, list[Detection]]]:
        import torch

        if self.architecture == "owl":
            inputs = self.processor(text=[list(names)] * len(images), images=images, return_tensors="pt")
        else:
            inputs = self.processor(text=[grounding_text(names)] * len(images), images=images, return_tensors="pt")
        inputs = {
            key: value.to(self.device, self.model.dtype) if value.is_floating_point() else value.to(self.device)
            for key, value in inputs.items()
        }
        with torch.no_grad():
            outputs = self.model(**inputs)
        # Scores and boxes in float32 whatever the model's dtype: the row keeps float32.
        outputs.logits = outputs.logits.float()
        outputs.pred_boxes = outputs.pred_boxes.float()
        sizes = [(image.height, image.width) for image in images]
        if self.architecture == "owl":
            return [
                candidates_by_class(names, result["labels"].tolist(), result["scores"].tolist(), result["boxes"])
                for result in self.processor.post_process_grounded_object_detection(
                    outputs, threshold=0.0, target_sizes=sizes
                )
            ]
        class_scores = grounding_class_scores(self.processor.tokenizer, names, outputs.logits, inputs["input_ids"])
        # A threshold below any score keeps every box, in the model's order: only the boxes are used.
        results = self.processor.post_process_grounded_object_detection(
            outputs, input_ids=inputs["input_ids"], threshold=-1.0, text_threshold=1.0, target_sizes=sizes
        )
        found = []
        for scores, result in zip(class_scores, results, strict=True):
            best, labels = scores.max(dim=-1)
            found.append(candidates_by_class(names, labels.tolist(), best.tolist(), result["boxes"]))
        return found

    # -- colours ------------------------------------------------------------------------------------------------

    def _with_colors(
        self, image: Image.Image, query: DetectorQuery, candidates: dict[str, list[Detection]]
    ) -> dict[str, list[Detection]]:
        """The candidates, each box of a coloured class with CLIP's probabilities for GenEval's colours."""
        for name in query.colored:
            boxes = candidates.get(name, [])
            if not boxes:
                continue
            crops = [image.crop(crop_box(d.box, image.size)) for d in boxes]
            probs = self.color_probabilities(crops, name)
            candidates[name] = [Detection(d.score, d.box, tuple(p)) for d, p in zip(boxes, probs, strict=True)]
        return candidates

    def color_probabilities(self, crops: Sequence[Image.Image], name: str) -> list[list[float]]:
        """CLIP's probabilities over COLORS for each crop of an object called ``name``.

        GenEval's zero-shot classifier: each colour's three prompts (COLOR_TEMPLATES) encoded, normalized,
        averaged and normalized again; then CLIP's logits (scaled cosine similarities) and a softmax over colours.
        """
        import torch

        if name not in self._color_text:
            prompts = tuple(t.format(color=c, object=name) for c in COLORS for t in COLOR_TEMPLATES)
            text = self.clip.label_embeddings(prompts).reshape(len(COLORS), len(COLOR_TEMPLATES), -1).mean(dim=1)
            self._color_text[name] = text / text.norm(dim=-1, keepdim=True)
        with torch.no_grad():
            probs = self.clip.probabilities_from(self.clip.image_embeddings(crops), self._color_text[name])
        return probs.tolist()


def candidates_by_class(
    names: Sequence[str], labels: Sequence[int], scores: Sequence[float], boxes: torch.Tensor
) -> dict[str, list[Detection]]:
    """Per class name, its boxes' detections, most confident first (the model's order on ties), at most
    MAX_OBJECTS. A label past the names (a padded query) belongs to no class."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    found: dict[str, list[Detection]] = {name: [] for name in names}
    box_rows = boxes.tolist()
    for i in order:
        label = int(labels[i])
        if 0 <= label < len(names) and len(found[names[label]]) < MAX_OBJECTS:
            x0, y0, x1, y1 = (float(v) for v in box_rows[i])
            found[names[label]].append(Detection(float(scores[i]), (x0, y0, x1, y1)))
    return found


def crop_box(box: Box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box in whole pixels inside the image, at least one pixel wide and high (a crop CLIP can read)."""
    import math

    width, height = size
    x0 = min(max(math.floor(min(box[0], box[2])), 0), width - 1)
    y0 = min(max(math.floor(min(box[1], box[3])), 0), height - 1)
    x1 = min(max(math.ceil(max(box[0], box[2])), x0 + 1), width)
    y1 = min(max(math.ceil(max(box[1], box[3])), y0 + 1), height)
    return x0, y0, x1, y1


# -- Grounding DINO: names as one sentence ---------------------------------------------------------------------


def grounding_text(names: Sequence[str]) -> str:
    """The sentence Grounding DINO reads, as its processor writes a list of names: lowercased, ". "-joined."""
    return ". ".join(name.strip().lower() for name in names) + "."


def grounding_spans(names: Sequence[str]) -> list[tuple[int, int]]:
    """Each name's characters in grounding_text(names)."""
    spans, at = [], 0
    for name in names:
        word = name.strip().lower()
        spans.append((at, at + len(word)))
        at += len(word) + 2
    return spans


def grounding_class_scores(
    tokenizer: Any, names: Sequence[str], logits: torch.Tensor, input_ids: torch.Tensor
) -> torch.Tensor:
    """[images, boxes, classes]: each box's highest token probability within each class's words."""
    import torch

    text = grounding_text(names)
    encoded = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if input_ids.shape[-1] < len(ids) or input_ids[0, : len(ids)].tolist() != list(ids):
        raise ValueError("the processor tokenized the class names otherwise than its tokenizer does alone")
    member = torch.zeros(len(names), logits.shape[-1], dtype=torch.bool)
    for c, (start, end) in enumerate(grounding_spans(names)):
        for t, (a, b) in enumerate(offsets):
            if t < logits.shape[-1] and b > a and a >= start and b <= end:
                member[c, t] = True
    probs = logits.sigmoid()  # [images, boxes, tokens]
    masked = torch.where(member.to(probs.device)[None, None], probs[:, :, None, :], torch.zeros(()).to(probs))
    return masked.amax(dim=-1).cpu()


# -- loading ---------------------------------------------------------------------------------------------------


def load_detector(ref: str, device: str, dtype: Any, offline_reason: str | None) -> tuple[Any, Any, str, ModelInfo]:
    """The detector and its processor by their real from_pretrained paths; a ref that is no supported detector
    raises MissingModelError, one paragraph naming --t2i-detector-model."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor, PreTrainedConfig

    from harness.common.model_loading import (
        MissingModelError,
        ModelInfo,
        hub_revision,
        load_pretrained,
        missing_model_message,
    )

    if Path(ref).is_dir() and not (Path(ref) / "config.json").is_file():
        raise MissingModelError(missing_model_message(ROLE, ref, OPTION, "", "config.json"), model=ref)
    # The config alone first (config.json, no weights): a model of another kind is named as such.
    config, _ = load_pretrained(
        ROLE, ref, OPTION, lambda hub: PreTrainedConfig.get_config_dict(ref, **hub), offline_reason
    )
    model_type = str(config.get("model_type", "unknown"))
    architecture = ARCHITECTURES.get(model_type)
    if architecture is None:
        raise MissingModelError(
            f"The {ROLE} {ref!r} ({OPTION}) is a {model_type!r} model, not an "
            "open-vocabulary detector the objects judge reads. Point --t2i-detector-model at an OWLv2, OWL-ViT or "
            f"Grounding DINO checkpoint, such as {DEFAULT_DETECTOR} (the default) or "
            "IDEA-Research/grounding-dino-tiny.",
            model=ref,
        )
    model = load_pretrained(
        ROLE,
        ref,
        OPTION,
        lambda hub: AutoModelForZeroShotObjectDetection.from_pretrained(ref, dtype=dtype, use_safetensors=True, **hub),
        offline_reason,
    )
    processor = load_pretrained(
        ROLE, ref, OPTION, lambda hub: AutoProcessor.from_pretrained(ref, **hub), offline_reason
    )
    model.to(device).eval()
    return model, processor, architecture, ModelInfo("detector", ref, hub_revision(ref, "config.json"))
