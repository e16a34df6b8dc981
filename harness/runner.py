"""Turn planned items into scored images: from the cache, or generated in batches across cases.

Items still run (and report) one by one in pytest's order. When an item needs an image that is not ready,
the runner looks ahead in that order, takes the next items whose generation settings match, and makes
their images in as few pipeline calls as the batch size allows; CLIP then scores the whole batch in one
forward. Later items find their results ready.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import atomic_write_bytes
from harness.checks import CaseCheckFailed, ClipVerdict, ResnetVerdict, failure_message, judge_clip, judge_resnet
from harness.generate import GeneratedImage, GenerationRequest, generate
from harness.prompt_length import truncation_notes, warn_truncated
from harness.results import ItemRecord

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from harness.cases import Case
    from harness.image_cache import ImageCache
    from harness.pipeline_handle import PipelineHandle
    from harness.score_cache import ScoreCache
    from harness.scoring import ClipScorer, ImagenetClassifier

IMAGES_DIR = "images"
_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
# A batch of cache hits costs nothing to generate but holds images in memory until their items run.
_MAX_GROUP_FACTOR = 4
# Items grouped for a first batch before `auto` has seen the device (all-cached groups never need it).
_GROUP_BEFORE_AUTO = 4

CaseKey = tuple[str, str]  # (case file node id, case id)
ItemKey = tuple[CaseKey, int]  # ... and the seed


@dataclass(frozen=True)
class Judges:
    """The score cache's names for the CLIP and ResNet scorers an item uses; None: never cached."""

    clip: str | None = None
    resnet: str | None = None


@dataclass(frozen=True)
class PlannedItem:
    key: CaseKey
    case: Case
    seed: int
    # Which fixture definitions the item sees (harness.fixtures.fixture_context): only items that
    # see the same pipeline and judges may share a pipeline call or a judge's forward.
    context: Hashable = None

    @property
    def request(self) -> GenerationRequest:
        return request_for(self.case, self.seed)


def request_for(case: Case, seed: int) -> GenerationRequest:
    return GenerationRequest(
        prompt=case.prompt,
        negative_prompt=case.negative_prompt,
        seed=seed,
        steps=case.steps,
        guidance_scale=case.guidance_scale,
        width=case.width,
        height=case.height,
    )


@dataclass
class ScoredImage:
    image_path: Path | None
    fault: str | None
    clip: ClipVerdict | None
    resnet: ResnetVerdict | None
    timings: dict[str, float]
    size: tuple[int, int] | None = None  # (width, height) actually generated
    notes: list[str] = field(default_factory=list)  # e.g. a prompt the text encoder truncates
    cached: bool = False
    cache_key: str | None = None


@dataclass
class _Pending:
    """An image made ahead of its item, with what is already known about it."""

    item: PlannedItem
    generated: GeneratedImage
    cached: bool
    cache_key: str | None
    notes: list[str]
    clip: ClipVerdict | None = None
    resnet: ResnetVerdict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _digest: str | None = None

    def digest(self) -> str:
        """The image's pixel sha256, the score cache's key: computed once, for both judges."""
        if self._digest is None:
            from harness.score_cache import image_digest

            assert self.generated.image is not None
            self._digest = image_digest(self.generated.image)
        return self._digest


def image_path(report_dir: Path, file_nodeid: str, case_id: str, seed: int) -> Path:
    """Where an item's PNG goes: built from the validated id and the file's own path, never escaping.

    The case file's path is mirrored (images/<dir>/<file>.yaml/<id>-seed<N>.png); a path component
    that is not plain ASCII gets a short hash, so two files never share a folder.
    """
    parts = [_safe_component(part) for part in file_nodeid.split("/") if part not in ("", ".", "..")]
    folder = report_dir.joinpath(IMAGES_DIR, *(parts or ["cases"])).resolve()
    path = (folder / f"{case_id}-seed{seed}.png").resolve()
    # Ids are validated when the file is parsed; this is the backstop should one ever slip through.
    if path.parent != folder or not folder.is_relative_to((report_dir / IMAGES_DIR).resolve()):
        raise ValueError(f"refusing to write an image outside the report dir: {path}")
    return path


def _safe_component(part: str) -> str:
    safe = _UNSAFE_PATH_CHARS.sub("_", part).lstrip(".")
    if safe == part:
        return part
    import hashlib

    return f"{safe or 'file'}-{hashlib.sha256(part.encode()).hexdigest()[:8]}"


@dataclass
class CaseRunner:
    """Session-wide: hands each item its scored image, making images ahead in batches."""

    report_dir: Path
    cache: ImageCache | None = None
    refresh: bool = False  # regenerate even on a cache hit, and overwrite the entry
    batch_size: int | None = None  # None: pick from the device's memory on first use
    same_case_only: bool = False  # batch a case's own seeds only (xdist workers)
    _plan: list[PlannedItem] = field(default_factory=list)
    _position: dict[ItemKey, int] = field(default_factory=dict)
    _pending: dict[ItemKey, _Pending] = field(default_factory=dict)
    _done: set[ItemKey] = field(default_factory=set)
    _text_embeddings: dict[tuple[Hashable, tuple[str, ...]], Any] = field(default_factory=dict)
    _warned_cases: set[CaseKey] = field(default_factory=set)
    _all_cached: set[Hashable] = field(default_factory=set)  # contexts whose images are all cached
    scores: ScoreCache | None = None  # judge outputs by image; None: always run the judges

    def plan(self, key: CaseKey, case: Case, seed: int, context: Hashable = None) -> None:
        """Register a selected item, in pytest's run order."""
        self._position[(key, seed)] = len(self._plan)
        self._plan.append(PlannedItem(key, case, seed, context))

    def scored(
        self,
        key: CaseKey,
        case: Case,
        seed: int,
        handle: PipelineHandle,
        clip_scorer: ClipScorer,
        classifier: ImagenetClassifier | None,
        judges: Judges | None = None,
    ) -> ScoredImage:
        """The item's image, generated or from the cache, and its verdicts.

        ``judges`` names the scorers for the score cache; None (a scorer from a conftest.py
        override, say) always runs them.
        """
        judges = judges or Judges()
        item_key = (key, seed)
        planned = self._planned(key, seed) or PlannedItem(key, case, seed)
        if item_key not in self._pending:
            self._make_batch(planned, handle, clip_scorer, judges.clip)
        if case.resnet is not None and classifier is not None:
            self._score_resnet(classifier, planned.context, judges.resnet)
        pending = self._pending.pop(item_key)
        self._done.add(item_key)
        if pending.notes and key not in self._warned_cases:
            # Warned here, for the item being handed out, once per case: under `-W error` the
            # warning fails this item only, after the whole batch has been scored.
            self._warned_cases.add(key)
            warn_truncated(case, pending.notes)
        return self._finish(pending)

    # -- generation --------------------------------------------------------------------------

    def needs_generation(self, fingerprint: dict[str, str] | None, context: Hashable = None) -> bool:
        """Whether some planned item still to run, seeing the pipeline of ``context``, has no cached image."""
        from harness.image_cache import cache_key

        if self.cache is None or fingerprint is None or self.refresh:
            return True
        if context in self._all_cached:  # once all were cached, they stay so (a corrupt one is seen when read)
            return False
        if all(
            self._is_hit(cache_key(fingerprint, item.request))
            for item in self._plan
            if (item.key, item.seed) not in self._done and item.context == context
        ):
            self._all_cached.add(context)
            return False
        return True

    def context_of(self, key: CaseKey, seed: int) -> Hashable:
        """The fixture context the item was planned with (None if it was not planned)."""
        planned = self._planned(key, seed)
        return planned.context if planned is not None else None

    def _planned(self, key: CaseKey, seed: int) -> PlannedItem | None:
        position = self._position.get((key, seed))
        return self._plan[position] if position is not None else None

    def _make_batch(
        self, first: PlannedItem, handle: PipelineHandle, clip_scorer: ClipScorer, clip_judge: str | None
    ) -> None:
        group = self._group(first, handle.fingerprint, self.batch_size or _GROUP_BEFORE_AUTO)

        hits: list[tuple[PlannedItem, str | None, Image.Image]] = []
        misses: list[tuple[PlannedItem, str | None]] = []
        for item, cache_key in group:
            image = None
            if self.cache is not None and cache_key is not None and not self.refresh:
                image = self.cache.get(cache_key)
            if image is not None:
                hits.append((item, cache_key, image))
            else:
                misses.append((item, cache_key))

        for item, cache_key, image in hits:
            self._add_pending(item, GeneratedImage(image, None, 0.0), True, cache_key, handle)
        generated = self._generate(handle, [item.request for item, _ in misses])
        for (item, cache_key), result in zip(misses, generated, strict=True):
            if self.cache is not None and cache_key is not None and result.image is not None:
                self.cache.put(cache_key, result.image, {"case": item.case.id, "seed": item.seed})
            self._add_pending(item, result, False, cache_key, handle)
        self._score_clip(clip_scorer, [self._pending[(item.key, item.seed)] for item, _ in group], clip_judge)

    def _group(
        self, first: PlannedItem, fingerprint: dict[str, str] | None, batch_size: int
    ) -> list[tuple[PlannedItem, str | None]]:
        """``first`` and the next planned items that can share its pipeline calls."""
        from harness.image_cache import cache_key

        def key_of(item: PlannedItem) -> str | None:
            return cache_key(fingerprint, item.request) if fingerprint is not None else None

        group = [(first, key_of(first))]
        start = self._position.get((first.key, first.seed))
        if start is None:  # not planned (run outside a normal collection): make it alone
            return group
        batch_key = first.request.batch_key
        misses = 0 if self._is_hit(group[0][1]) else 1
        for item in self._plan[start + 1 :]:
            if misses >= batch_size or len(group) >= batch_size * _MAX_GROUP_FACTOR:
                break
            item_key = (item.key, item.seed)
            if item_key in self._done or item_key in self._pending or item.request.batch_key != batch_key:
                continue
            if item.context != first.context:
                continue
            if self.same_case_only and item.key != first.key:
                continue
            key = key_of(item)
            group.append((item, key))
            misses += not self._is_hit(key)
        return group

    def _is_hit(self, key: str | None) -> bool:
        return self.cache is not None and key is not None and not self.refresh and self.cache.path_for(key).is_file()

    def _generate(self, handle: PipelineHandle, requests: list[GenerationRequest]) -> list[GeneratedImage]:
        """Generate in chunks of the batch size; on out-of-memory, halve it and retry."""
        import torch

        if not requests:
            return []
        pipeline = handle.get()
        if self.batch_size is None:
            self.batch_size = auto_batch_size(pipeline, requests[0])
        results: list[GeneratedImage] = []
        done = 0
        while done < len(requests):
            size = self.batch_size or 1
            chunk = requests[done : done + size]
            out_of_memory = False
            try:
                results.extend(generate(pipeline, chunk))
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                out_of_memory = True
            if out_of_memory:
                # Outside the except block: the traceback no longer holds the batch's tensors.
                _free_device_memory()
                if size > 1:
                    # Remembered for the rest of the session: the next batches start smaller.
                    self.batch_size = max(1, size // 2)
                    continue
                results.append(GeneratedImage(None, _out_of_memory_message(chunk[0]), 0.0))
            done += len(chunk)
        return results

    def _add_pending(
        self, item: PlannedItem, generated: GeneratedImage, cached: bool, cache_key: str | None, handle: PipelineHandle
    ) -> None:
        tokenizer = handle.tokenizer()
        notes = truncation_notes(tokenizer, item.case) if tokenizer is not None else []
        pending = _Pending(item, generated, cached, cache_key, notes)
        pending.timings["generate_s"] = generated.seconds
        self._pending[(item.key, item.seed)] = pending

    # -- scoring ----------------------------------------------------------------------------

    def _score_clip(self, clip_scorer: ClipScorer, batch: list[_Pending], judge: str | None) -> None:
        scorable = [p for p in batch if p.generated.image is not None]
        if not scorable:
            return
        started = time.perf_counter()
        width = getattr(getattr(clip_scorer.model, "config", None), "projection_dim", None)
        image_embeds = self._judged(judge, width, scorable, clip_scorer.image_embeddings)
        # Rows from the score cache are float32 on the CPU; the round trip is exact for fp16 and bf16.
        image_embeds = image_embeds.to(clip_scorer.device, clip_scorer.model.dtype)
        for row, pending in enumerate(scorable):
            labels = pending.item.case.clip.labels
            # Once per distinct label set and CLIP: a folder's conftest.py may bring another CLIP.
            text_key = (pending.item.context, labels)
            if text_key not in self._text_embeddings:
                self._text_embeddings[text_key] = clip_scorer.text_embeddings(labels)
            probs = clip_scorer.probabilities_from(image_embeds[row : row + 1], self._text_embeddings[text_key])
            pending.clip = judge_clip(pending.item.case.clip, probs[0].tolist())
        per_image = (time.perf_counter() - started) / len(scorable)
        for pending in scorable:
            pending.timings["clip_s"] = per_image

    def _score_resnet(self, classifier: ImagenetClassifier, context: Hashable, judge: str | None) -> None:
        """One ResNet forward for every ready image that still needs ResNet and sees this classifier."""
        waiting = [
            p
            for p in self._pending.values()
            if p.item.case.resnet is not None
            and p.resnet is None
            and p.generated.image is not None
            and p.item.context == context
        ]
        if not waiting:
            return
        started = time.perf_counter()
        probs = self._judged(judge, len(classifier.categories), waiting, classifier.probabilities)
        per_image = (time.perf_counter() - started) / len(waiting)
        for row, pending in enumerate(waiting):
            assert pending.item.case.resnet is not None
            pending.resnet = judge_resnet(pending.item.case.resnet, probs[row].tolist(), classifier.categories)
            pending.timings["resnet_s"] = per_image

    def _judged(
        self,
        judge: str | None,
        length: int | None,
        batch: list[_Pending],
        compute: Callable[[list[Image.Image]], torch.Tensor],
    ) -> torch.Tensor:
        """``compute`` of the batch's images, one row per image, with rows the score cache holds taken from it.

        The rest are computed in one call and stored. Without a cache or a judge, just ``compute``.
        """
        import torch

        images = [p.generated.image for p in batch if p.generated.image is not None]  # all are: callers filter
        if self.scores is None or judge is None or length is None:
            return compute(images)
        digests = [p.digest() for p in batch]
        rows: list[torch.Tensor | None] = [None] * len(images)
        if not self.refresh:
            for index, digest in enumerate(digests):
                vector = self.scores.get(judge, digest, length)
                if vector is not None:
                    rows[index] = torch.from_numpy(vector)
        missing = [index for index, row in enumerate(rows) if row is None]
        if missing:
            computed = compute([images[index] for index in missing]).float().cpu()
            for index, row in zip(missing, computed, strict=True):
                rows[index] = row
                self.scores.put(judge, digests[index], row.numpy())
        return torch.stack([row for row in rows if row is not None])

    def _finish(self, pending: _Pending) -> ScoredImage:
        image = pending.generated.image
        path = None
        if image is not None:
            path = image_path(self.report_dir, pending.item.key[0], pending.item.case.id, pending.item.seed)
            entry = self.cache.path_for(pending.cache_key) if self.cache and pending.cache_key else None
            if entry is not None and entry.is_file():
                # The cache entry is already a PNG of these pixels: copy it rather than encode again.
                atomic_write_bytes(path, entry.read_bytes())
            else:
                _save_png(image, path)
        return ScoredImage(
            image_path=path,
            fault=pending.generated.fault,
            clip=pending.clip,
            resnet=pending.resnet,
            timings=pending.timings,
            size=image.size if image is not None else None,
            notes=pending.notes,
            cached=pending.cached,
            cache_key=pending.cache_key,
        )


def auto_batch_size(pipeline: Any, request: GenerationRequest) -> int:
    """Images per pipeline call: by free memory on CUDA, a small fixed batch elsewhere."""
    import torch

    device = getattr(pipeline, "device", None)
    if device is None or device.type != "cuda":
        return 4
    free, _ = torch.cuda.mem_get_info(device)
    width = request.width or 512
    height = request.height or 512
    # About 1 GiB per 512x512 image with classifier-free guidance in fp16 (activations and attention
    # maps); twice that in fp32. Out-of-memory still halves the batch if this guess is too high.
    bytes_per_image = 2**30 * (width * height) / (512 * 512) * (2 if pipeline.dtype == torch.float32 else 1)
    return max(1, min(32, int(free * 0.7 // bytes_per_image)))


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    # CUDA raises torch.OutOfMemoryError; MPS raises a plain RuntimeError saying so.
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_device_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()


def _out_of_memory_message(request: GenerationRequest) -> str:
    size = f"{request.width}x{request.height}" if request.width else "the pipeline's default size"
    return (
        f"the device ran out of memory generating one image at {size} with {request.steps} steps, even at batch "
        "size 1; lower width/height, use --t2i-dtype=float16 (or bfloat16), or free memory used by other "
        "processes (the models stay loaded and the run goes on)"
    )


def _save_png(image: Image.Image, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def apply_to_record(record: ItemRecord, scored: ScoredImage, report_dir: Path) -> None:
    """Copy scores into the record, then raise CaseCheckFailed if the item did not pass."""
    if scored.image_path is not None:
        record.image = scored.image_path.relative_to(report_dir).as_posix()
    record.fault = scored.fault
    record.cached = scored.cached
    record.cache_key = scored.cache_key
    record.warnings.extend(scored.notes)
    if scored.size is not None:
        record.width, record.height = scored.size
    record.timings.update(scored.timings)
    if scored.clip is not None:
        record.set_clip(scored.clip)
    if scored.resnet is not None:
        record.set_resnet(scored.resnet)
    failed = (
        scored.fault is not None
        or (scored.clip is not None and not scored.clip.passed)
        or (scored.resnet is not None and not scored.resnet.passed)
    )
    if failed:
        raise CaseCheckFailed(failure_message(scored.clip, scored.resnet, scored.fault))
