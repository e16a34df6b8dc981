"""Run one item: generate its case's images (all selected seeds at once), score them, judge them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checks import CaseCheckFailed, ClipVerdict, ResnetVerdict, failure_message, judge_clip, judge_resnet
from harness.generate import GenerationRequest, generate
from harness.prompt_length import truncation_notes, warn_truncated
from harness.results import ItemRecord

if TYPE_CHECKING:
    from PIL import Image

    from harness.cases import Case
    from harness.scoring import ClipScorer, ImagenetClassifier

IMAGES_DIR = "images"
_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")

CaseKey = tuple[str, str]  # (case file node id, case id)


@dataclass
class ScoredImage:
    image_path: Path | None
    fault: str | None
    clip: ClipVerdict | None
    resnet: ResnetVerdict | None
    timings: dict[str, float]
    size: tuple[int, int] | None = None  # (width, height) actually generated
    notes: list[str] = field(default_factory=list)  # e.g. a prompt the text encoder truncates


def image_path(report_dir: Path, file_nodeid: str, case_id: str, seed: int) -> Path:
    """Where an item's PNG goes: built from the validated id and the file's own path, never escaping."""
    folder = _UNSAFE_PATH_CHARS.sub("_", file_nodeid.replace("/", "__")).lstrip(".") or "cases"
    path = (report_dir / IMAGES_DIR / folder / f"{case_id}-seed{seed}.png").resolve()
    if not path.is_relative_to((report_dir / IMAGES_DIR).resolve()):
        raise ValueError(f"refusing to write an image outside the report dir: {path}")
    return path


@dataclass
class CaseRunner:
    """Session-wide: generates each case once for all its selected seeds and hands out results."""

    report_dir: Path
    planned_seeds: dict[CaseKey, list[int]] = field(default_factory=dict)
    _ready: dict[tuple[CaseKey, int], ScoredImage] = field(default_factory=dict)

    def plan(self, key: CaseKey, seed: int) -> None:
        self.planned_seeds.setdefault(key, []).append(seed)

    def scored(
        self,
        key: CaseKey,
        case: Case,
        seed: int,
        pipeline: Any,
        clip_scorer: ClipScorer,
        classifier: ImagenetClassifier | None,
    ) -> ScoredImage:
        if (key, seed) not in self._ready:
            # The first selected seed of a case generates every selected seed in one call.
            seeds = [s for s in self.planned_seeds.get(key, [seed]) if (key, s) not in self._ready] or [seed]
            if seed not in seeds:
                seeds.append(seed)
            for s, result in zip(seeds, self._run_case(key, case, seeds, pipeline, clip_scorer, classifier)):
                self._ready[(key, s)] = result
            self.planned_seeds[key] = [s for s in self.planned_seeds.get(key, []) if s not in seeds]
        return self._ready.pop((key, seed))

    def _run_case(
        self,
        key: CaseKey,
        case: Case,
        seeds: list[int],
        pipeline: Any,
        clip_scorer: ClipScorer,
        classifier: ImagenetClassifier | None,
    ) -> list[ScoredImage]:
        requests = [
            GenerationRequest(case.prompt, case.negative_prompt, seed, case.steps, case.guidance_scale, case.width, case.height)
            for seed in seeds
        ]
        notes = truncation_notes(pipeline.tokenizer, case) if getattr(pipeline, "tokenizer", None) else []
        warn_truncated(case, notes)
        generated = generate(pipeline, requests)
        good = [(i, g.image) for i, g in enumerate(generated) if g.image is not None]
        images: list[Image.Image] = [image for _, image in good if image is not None]

        clip_verdicts: dict[int, ClipVerdict] = {}
        resnet_verdicts: dict[int, ResnetVerdict] = {}
        clip_seconds = resnet_seconds = 0.0
        if images:
            started = time.perf_counter()
            clip_probs = clip_scorer.probabilities(images, case.clip.labels)
            clip_seconds = (time.perf_counter() - started) / len(images)
            for row, (index, _) in enumerate(good):
                clip_verdicts[index] = judge_clip(case.clip, clip_probs[row].tolist())
            if case.resnet is not None and classifier is not None:
                started = time.perf_counter()
                resnet_probs = classifier.probabilities(images)
                resnet_seconds = (time.perf_counter() - started) / len(images)
                for row, (index, _) in enumerate(good):
                    resnet_verdicts[index] = judge_resnet(case.resnet, resnet_probs[row], classifier.categories)

        results = []
        for index, (seed, result) in enumerate(zip(seeds, generated)):
            path = None
            if result.image is not None:
                path = image_path(self.report_dir, key[0], case.id, seed)
                _save_png(result.image, path)
            timings = {"generate_s": result.seconds}
            if index in clip_verdicts:
                timings["clip_s"] = clip_seconds
            if index in resnet_verdicts:
                timings["resnet_s"] = resnet_seconds
            size = result.image.size if result.image is not None else None
            results.append(
                ScoredImage(
                    path, result.fault, clip_verdicts.get(index), resnet_verdicts.get(index), timings, size, notes
                )
            )
        return results


def _save_png(image: Image.Image, path: Path) -> None:
    import io

    from harness.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def apply_to_record(record: ItemRecord, scored: ScoredImage, report_dir: Path) -> None:
    """Copy scores into the record, then raise CaseCheckFailed if the item did not pass."""
    if scored.image_path is not None:
        record.image = scored.image_path.relative_to(report_dir).as_posix()
    record.fault = scored.fault
    record.warnings.extend(scored.notes)
    if scored.size is not None:
        record.width, record.height = scored.size
    record.timings.update(scored.timings)
    if scored.clip is not None:
        record.set_clip(scored.clip)
    if scored.resnet is not None:
        record.set_resnet(scored.resnet)
    failed = scored.fault is not None or (scored.clip is not None and not scored.clip.passed) or (
        scored.resnet is not None and not scored.resnet.passed
    )
    if failed:
        raise CaseCheckFailed(failure_message(scored.clip, scored.resnet, scored.fault))
