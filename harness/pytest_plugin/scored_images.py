"""Turn planned items into scored images: from the cache, or generated in batches across cases.

Items still run (and report) one by one in pytest's order. When an item needs an image that is not ready,
the runner looks ahead in that order, takes the next items whose generation settings match, and makes
their images in as few pipeline calls as the batch size allows; each judge then scores the whole batch in
one forward. Later items find their results ready.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.common.errors import describe_error
from harness.common.names import SAFE_NAME, UNSAFE_PATH_CHARS
from harness.generation.generate import GeneratedImage, GenerationRequest, generate
from harness.generation.prompt_length import truncation_notes, warn_truncated
from harness.judging.batch_scoring import ToScore, score_rows
from harness.reports.report_dir import ReportDir

if TYPE_CHECKING:
    from PIL import Image

    from harness.cases.case_file import Case
    from harness.generation.image_cache import ImageCache
    from harness.generation.pipeline_handle import PipelineHandle
    from harness.judging.judge import Judge, Verdict
    from harness.judging.score_cache import ScoreCache

IMAGES_DIR = "images"
# A batch of cache hits costs nothing to generate but holds images in memory until their items run.
_MAX_GROUP_FACTOR = 4
# Items grouped for a first batch before `auto` has seen the device (all-cached groups never need it).
_GROUP_BEFORE_AUTO = 4

CaseKey = tuple[str, str]  # (case file node id, case id)
ItemKey = tuple[CaseKey, int]  # ... and the seed


@dataclass(frozen=True)
class JudgeUse:
    """A judge as an item sees it: the judge, its model (its fixture's value) and its score-cache name."""

    judge: Judge[Any, Any]
    model: Any
    cache_name: str | None = None  # None: never cached (e.g. a model from a conftest.py override)


@dataclass(frozen=True)
class PlannedItem:
    key: CaseKey
    case: Case
    seed: int
    # Which fixture definitions the item sees (harness.pytest_plugin.fixtures.fixture_context): only items that
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
    verdicts: dict[str, Verdict]  # by judge section
    timings: dict[str, float]
    size: tuple[int, int] | None = None  # (width, height) actually generated
    notes: list[str] = field(default_factory=list)  # e.g. a prompt the text encoder truncates
    cached: bool = False
    cache_key: str | None = None
    errors: dict[str, str] = field(default_factory=dict)  # judge section -> why it has no verdict
    image_sha256: str | None = None  # the pixels' digest (the score cache's key)


@dataclass
class _Pending:
    """An image made ahead of its item, with what is already known about it."""

    item: PlannedItem
    generated: GeneratedImage
    cached: bool
    cache_key: str | None
    notes: list[str]
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # by judge section
    timings: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # judge section -> why scoring this image failed
    _digest: str | None = None

    @property
    def scorable(self) -> bool:
        return self.generated.image is not None

    @property
    def image(self) -> Image.Image:
        """The image to score (only scorable items are ever scored)."""
        assert self.generated.image is not None
        return self.generated.image

    def digest(self) -> str:
        """The image's pixel sha256, the score cache's key: computed once, for every judge."""
        if self._digest is None:
            from harness.judging.score_cache import image_digest

            assert self.generated.image is not None
            self._digest = image_digest(self.generated.image)
        return self._digest


def image_path(report_dir: Path, file_nodeid: str, case_id: str, seed: int) -> Path:
    """Where an item's PNG goes: built from the validated id and the file's own path, never escaping.

    The case file's path is mirrored (images/<dir>/<file>.yaml/<id>-seed<N>.png); a path component
    that is not plain ASCII, or is too long for a file name, gets a short hash, so two files never
    share a folder. The path is built lexically and never resolved: the folders are created by
    harness.common.atomic as real folders, so a symlink planted under images/ is replaced, not followed.
    """
    parts = [_safe_component(part) for part in file_nodeid.split("/") if part not in ("", ".", "..")]
    name = f"{case_id}-seed{seed}.png"
    # Ids are validated when the file is parsed; this is the backstop should one ever slip through.
    if not SAFE_NAME.match(name):
        raise ValueError(f"refusing to write an image outside the report dir: {case_id!r}")
    return report_dir.joinpath(IMAGES_DIR, *(parts or ["cases"]), name)


# Leaves room in a 255-byte file name for the hash suffix, and for harness.common.atomic's temp names.
_MAX_COMPONENT = 200


def _safe_component(part: str) -> str:
    safe = UNSAFE_PATH_CHARS.sub("_", part).lstrip(".")
    if safe == part and len(part) <= _MAX_COMPONENT:
        return part
    import hashlib

    return (
        f"{safe[:_MAX_COMPONENT] or 'file'}-{hashlib.sha256(part.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
    )


@dataclass
class ScoredImages:
    """Session-wide: hands each item its scored image, making images ahead in batches."""

    report_dir: Path
    cache: ImageCache | None = None
    refresh: bool = False  # regenerate even on a cache hit, and overwrite the entry
    batch_size: int | None = None  # None: pick from the device's memory on first use
    same_case_only: bool = False  # batch a case's own seeds only (xdist workers)
    scores: ScoreCache | None = None  # judge outputs by image; None: always run the judges
    output: ReportDir | None = None  # where item images go; None: a ReportDir of report_dir
    _plan: list[PlannedItem] = field(default_factory=list)
    _position: dict[ItemKey, int] = field(default_factory=dict)
    _pending: dict[ItemKey, _Pending] = field(default_factory=dict)
    _done: set[ItemKey] = field(default_factory=set)
    _case_problems: dict[tuple[Hashable, CaseKey], str | None] = field(default_factory=dict)
    _warned_cases: set[CaseKey] = field(default_factory=set)
    _all_cached: set[Hashable] = field(default_factory=set)  # contexts whose images are all cached
    _cache_warned: bool = False

    def __post_init__(self) -> None:
        if self.output is None:
            self.output = ReportDir(self.report_dir)

    def plan(self, key: CaseKey, case: Case, seed: int, context: Hashable = None) -> None:
        """Register a selected item, in pytest's run order."""
        self._position[(key, seed)] = len(self._plan)
        self._plan.append(PlannedItem(key, case, seed, context))

    def scored(
        self, key: CaseKey, case: Case, seed: int, handle: PipelineHandle, judges: dict[str, JudgeUse]
    ) -> ScoredImage:
        """The item's image, generated or from the cache, and the verdict of each judge in ``judges``.

        A check that could not be computed on this image says why in ``errors``: it never passes silently.
        """
        item_key = (key, seed)
        planned = self._planned(key, seed) or PlannedItem(key, case, seed)
        problem = self._case_problem(judges, planned)
        if problem is not None and item_key not in self._pending:
            # A case-file problem (a judge cannot read the check): nothing to generate for it.
            self._done.add(item_key)
            return ScoredImage(None, problem, {}, {})
        if item_key not in self._pending:
            self._make_batch(planned, handle, judges)
        # Every ready image that still needs a judge and sees this one is scored in one forward: the
        # batch just made, and any image an interrupted item left behind.
        for section, use in judges.items():
            self._score(section, use, planned.context, judges)
        pending = self._pending.pop(item_key)
        self._done.add(item_key)
        if pending.notes and key not in self._warned_cases:
            # Warned here, for the item being handed out, once per case: under `-W error` the
            # warning fails this item only, after the whole batch has been scored.
            self._warned_cases.add(key)
            warn_truncated(case, pending.notes)
        scored = self._finish(pending)
        self._warn_if_cache_unwritable()
        return scored

    # -- generation --------------------------------------------------------------------------

    def needs_generation(self, fingerprint: dict[str, str] | None, context: Hashable = None) -> bool:
        """Whether some planned item still to run, seeing the pipeline of ``context``, has no cached image."""
        from harness.generation.image_cache import cache_key

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

    def _make_batch(self, first: PlannedItem, handle: PipelineHandle, judges: dict[str, JudgeUse]) -> None:
        group = self._group(first, handle.fingerprint, self.batch_size or _GROUP_BEFORE_AUTO, judges)

        misses: list[tuple[PlannedItem, str | None]] = []
        for item, cache_key in group:
            image = None
            if self.cache is not None and cache_key is not None and not self.refresh:
                image = self.cache.get(cache_key)
            if image is not None:
                self._add_pending(item, GeneratedImage(image, None, 0.0), True, cache_key, handle)
            else:
                misses.append((item, cache_key))

        # Each chunk's images are kept as soon as its pipeline call returns: should a later chunk be
        # interrupted (an item's time limit, say), the finished images are never made again.
        done = 0
        for results in self._generate(handle, [item.request for item, _ in misses]):
            for (item, cache_key), result in zip(misses[done : done + len(results)], results, strict=True):
                if self.cache is not None and cache_key is not None and result.image is not None:
                    self.cache.put(cache_key, result.image, {"case": item.case.id, "seed": item.seed})
                self._add_pending(item, result, False, cache_key, handle)
            done += len(results)

    def _group(
        self, first: PlannedItem, fingerprint: dict[str, str] | None, batch_size: int, judges: dict[str, JudgeUse]
    ) -> list[tuple[PlannedItem, str | None]]:
        """``first`` and the next planned items that can share its pipeline calls."""
        from harness.generation.image_cache import cache_key

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
            if self._case_problem(judges, item) is not None:
                continue  # it fails without an image when its turn comes
            key = key_of(item)
            group.append((item, key))
            misses += not self._is_hit(key)
        return group

    def _is_hit(self, key: str | None) -> bool:
        return self.cache is not None and key is not None and not self.refresh and self.cache.path_for(key).is_file()

    def _generate(self, handle: PipelineHandle, requests: list[GenerationRequest]) -> Iterator[list[GeneratedImage]]:
        """Generate in chunks of the batch size, yielding each chunk's images as its call returns.

        On out-of-memory the batch size is halved and the chunk retried. Any other error in a call of
        several images is retried one image at a time, so that an error belongs to the image that
        caused it; an image whose own call fails gets that error as its fault.
        """
        import torch

        if not requests:
            return
        pipeline = handle.get()
        if self.batch_size is None:
            self.batch_size = auto_batch_size(pipeline, requests[0])
        done = 0
        while done < len(requests):
            size = self.batch_size or 1
            chunk = requests[done : done + size]
            out_of_memory = False
            try:
                results = generate(pipeline, chunk)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_out_of_memory(exc):
                    results = self._one_by_one(pipeline, chunk, exc)
                else:
                    out_of_memory = True
            except Exception as exc:
                results = self._one_by_one(pipeline, chunk, exc)
            except BaseException:
                # Interrupted (pytest-timeout's failure, Ctrl-C): the item whose call this is fails. The
                # rest of the run makes one image per call, so no later item pays for others' images.
                if len(chunk) > 1:
                    self.batch_size = 1
                raise
            if out_of_memory:
                # Outside the except block: the traceback no longer holds the batch's tensors.
                _free_device_memory()
                if size > 1:
                    # Remembered for the rest of the session: the next batches start smaller.
                    self.batch_size = max(1, size // 2)
                    continue
                results = [GeneratedImage(None, _out_of_memory_message(chunk[0]), 0.0)]
            done += len(chunk)
            yield results

    @staticmethod
    def _one_by_one(pipeline: Any, chunk: list[GenerationRequest], error: Exception) -> list[GeneratedImage]:
        if len(chunk) == 1:
            return [GeneratedImage(None, f"the pipeline raised {describe_error(error)}", 0.0)]
        results = []
        for request in chunk:
            try:
                results.extend(generate(pipeline, [request]))
            except Exception as exc:
                results.append(GeneratedImage(None, f"the pipeline raised {describe_error(exc)}", 0.0))
        return results

    def _add_pending(
        self, item: PlannedItem, generated: GeneratedImage, cached: bool, cache_key: str | None, handle: PipelineHandle
    ) -> None:
        tokenizer = handle.tokenizer()
        notes = truncation_notes(tokenizer, item.case) if tokenizer is not None else []
        pending = _Pending(item, generated, cached, cache_key, notes)
        pending.timings["generate_s"] = generated.seconds
        self._pending[(item.key, item.seed)] = pending

    def _warn_if_cache_unwritable(self) -> None:
        if self._cache_warned:
            return
        problem = next(
            (cache.write_error for cache in (self.cache, self.scores) if cache is not None and cache.write_error),
            None,
        )
        if problem is not None:
            self._cache_warned = True
            warnings.warn(CacheWriteWarning(problem), stacklevel=2)

    # -- scoring ----------------------------------------------------------------------------

    def _case_problem(self, judges: dict[str, JudgeUse], item: PlannedItem) -> str | None:
        """Why a judge cannot score this case's check at all (e.g. a label too long for its text encoder), or None."""
        key = (item.context, item.key)
        if key not in self._case_problems:
            problems = [
                problem
                for section, use in judges.items()
                if section in item.case.checks
                for problem in use.judge.problems(item.case.checks[section], item.case, use.model)
            ]
            file = item.key[0] or str(item.case.path)
            self._case_problems[key] = "\n".join(p.format(file) for p in problems) or None
        return self._case_problems[key]

    def _score(self, section: str, use: JudgeUse, context: Hashable, judges: dict[str, JudgeUse]) -> None:
        """One forward of ``use``'s judge for every ready image of ``context`` that still needs it."""
        waiting = [
            p
            for p in self._pending.values()
            if p.scorable
            and p.item.context == context
            and section in p.item.case.checks
            and section not in p.verdicts
            and section not in p.errors
        ]
        if not waiting:
            return
        started = time.perf_counter()
        judge = use.judge
        batch = [
            ToScore(id(p), p.image, p.digest, judge.query(p.item.case.checks[section]) if judge.has_query else None)
            for p in waiting
        ]
        rows, errors = score_rows(use.judge, use.model, use.cache_name, batch, self.scores, self.refresh)
        for pending in waiting:
            row = rows.get(id(pending))
            if row is None:
                pending.errors[section] = errors[id(pending)]
                continue
            problem = self._case_problem(judges, pending.item)
            if problem is not None:
                pending.errors[section] = problem
                continue
            try:
                pending.verdicts[section] = use.judge.verdict(use.model, pending.item.case.checks[section], row)
            except Exception as exc:
                pending.errors[section] = f"{use.judge.title} could not score this image: {describe_error(exc)}"
        per_image = (time.perf_counter() - started) / len(waiting)
        for pending in waiting:
            pending.timings[f"{section}_s"] = per_image

    def _finish(self, pending: _Pending) -> ScoredImage:
        path = None
        if pending.generated.image is not None:
            path = image_path(self.report_dir, pending.item.key[0], pending.item.case.id, pending.item.seed)
            assert self.output is not None
            if not self.output.write(path, self._png_of(pending)):
                path = None  # the run reports the report dir's problem once
        return self._scored_image(pending, path)

    def _png_of(self, pending: _Pending) -> bytes:
        """The image as a PNG: the cache entry when there is one (already a PNG of these pixels: copied rather
        than encoded again), else encoded now."""
        assert pending.generated.image is not None
        entry = self.cache.path_for(pending.cache_key) if self.cache and pending.cache_key else None
        data = _cached_png(entry)
        return data if data is not None else _png_bytes(pending.generated.image)

    @staticmethod
    def _scored_image(pending: _Pending, path: Path | None) -> ScoredImage:
        image = pending.generated.image
        return ScoredImage(
            image_path=path,
            fault=pending.generated.fault,
            verdicts=dict(pending.verdicts),
            timings=pending.timings,
            size=image.size if image is not None else None,
            notes=pending.notes,
            cached=pending.cached,
            cache_key=pending.cache_key,
            errors=dict(pending.errors),
            image_sha256=pending.digest() if image is not None else None,
        )


class CacheWriteWarning(UserWarning):
    """The image or score cache could not be written: the run goes on without storing entries."""


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


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _cached_png(entry: Path | None) -> bytes | None:
    if entry is None:
        return None
    try:
        return entry.read_bytes()
    except OSError:  # deleted or unreadable meanwhile: encode the pixels instead
        return None
