"""A Ray actor that generates and judges batches of planned images: the pipeline and judges loaded once.

The actor receives model references and settings (what the options resolved to), never live models: it loads
them with the same code the session fixtures use (harness.common.model_loading and the judges' own builders),
on its own device, the first time a batch needs them. A batch runs through the same runner as a run without
Ray (harness.pytest_plugin.scored_images.ScoredImages): the same look-ahead, pipeline calls, out-of-memory
halving, score cache and case-problem checks; only the PNGs and verdicts travel back to the driver.

This module is imported on the cluster's nodes; Ray itself is imported by the driver (ray_images), which
wraps the class with ``ray.remote``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.common.model_loading import MissingModelError, ModelInfo
from harness.pytest_plugin.scored_images import CaseKey, ItemKey, JudgeUse, ScoredImage, ScoredImages, _Pending

if TYPE_CHECKING:
    from harness.cases.case_file import Case
    from harness.generation.pipeline_handle import PipelineHandle
    from harness.judging.judge import Judge
    from harness.pytest_plugin.options import Settings

# The judges' model fixtures an actor can build itself, from the options alone. A judge whose model lives in
# another fixture (a conftest.py's, a plugin's) is refused on Ray before the run (ray_refusal).
ACTOR_FIXTURES = ("clip_scorer", "imagenet_classifier", "vqa_model", "object_detector")

# A hidden test hook: "DIR;CASE=N[,CASE=N]" makes an actor exit (as a lost node or the OOM killer would end it)
# when it starts a batch holding CASE, the first N times over all actors (counted by files in DIR).
TEST_EXIT_ENV = "T2I_RAY_TEST_EXIT"


@dataclass(frozen=True)
class BatchItem:
    key: CaseKey
    case: Case
    seed: int


@dataclass
class Batch:
    """Planned items that may share pipeline calls (same settings and fixture context), in pytest's order."""

    index: int
    items: list[BatchItem]
    judges: dict[str, Judge[Any, Any]]  # by section: every section these items' cases declare
    # The driver's cache entries for these items (by cache key), when the cache is not on shared storage.
    entries: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class MissingModel:
    """A MissingModelError, as data: its keyword-only arguments would not survive pickling as an exception."""

    message: str
    model: str
    key: str
    summary: str

    def error(self) -> MissingModelError:
        return MissingModelError(self.message, model=self.model, key=self.key, summary=self.summary)


@dataclass
class ItemResult:
    key: CaseKey
    seed: int
    scored: ScoredImage | None  # image_path unset: the driver writes the PNG into its report dir
    png: bytes | None = None  # the image (a cache entry when there is one: the PNG the report copies)
    missing: MissingModel | None = None  # a model that could not be loaded: the item fails as without Ray


@dataclass
class BatchResult:
    index: int
    items: list[ItemResult]
    environment: dict[str, str]  # what the report's environment says: models, device, dtype
    cache_problem: str | None = None  # the image or score cache could not be written (CacheWriteWarning)
    actor: str = ""  # host:pid, for messages


@dataclass
class ActorOptions:
    """What an actor needs from the driver: the resolved options and the device and dtype as requested."""

    settings: Settings
    device: str  # as given (auto, cpu, cuda...): resolved on the actor's own node
    dtype_name: str
    shared_cache: bool  # settings.cache_dir is on storage every node mounts: read and write it there
    model_refs: dict[str, tuple[str, str]]  # judge fixture -> (model ref, how messages name its option)
    test_exit: str | None = None  # TEST_EXIT_ENV, forwarded by the driver


class _ActorImages(ScoredImages):
    """The session runner, keeping each image as PNG bytes for the driver instead of writing a report dir."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pngs: dict[ItemKey, bytes] = {}

    def _finish(self, pending: _Pending) -> ScoredImage:
        if pending.generated.image is not None:
            self.pngs[(pending.item.key, pending.item.seed)] = self._png_of(pending)
        return self._scored_image(pending, None)


class BatchActor:
    def __init__(self, options: ActorOptions) -> None:
        from harness.generation.image_cache import SCORES_DIR, ImageCache
        from harness.judging.score_cache import ScoreCache
        from harness.pytest_plugin.options import resolve_device

        device = resolve_device(options.device)
        dtype_name = options.dtype_name
        if dtype_name == "auto":
            dtype_name = "float16" if device.startswith("cuda") else "float32"
        self.settings = dataclasses.replace(options.settings, device=device, dtype_name=dtype_name)
        self.options = options
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        cache_dir = self.settings.cache_dir
        self._scratch = Path(tempfile.mkdtemp(prefix="t2i-ray-"))
        if cache_dir is not None and not options.shared_cache:
            cache_dir = self._scratch / "cache"  # entries the driver sends, and the new ones it keeps
        self.images = _ActorImages(
            report_dir=self._scratch,
            cache=ImageCache(cache_dir) if cache_dir is not None else None,
            scores=ScoreCache(cache_dir / SCORES_DIR) if cache_dir is not None and options.shared_cache else None,
            refresh=self.settings.refresh,
            batch_size=self.settings.batch_size,
        )
        self.models: dict[str, Any] = {}
        self.failed: dict[str, MissingModel] = {}  # a model that could not load fails every later batch at once
        self.infos: dict[str, ModelInfo] = {}
        self._handle: PipelineHandle | None = None
        self._offline: Any = None

    # -- asked by the driver -----------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, str] | None:
        """The cache key's model part, as this actor computes it (for the driver's own cache lookups)."""
        try:
            return self._pipeline_handle().fingerprint
        except MissingModelError:
            return None

    def auto_batch_size(self) -> int:
        """Images per pipeline call for `auto` on this actor's device (4 off CUDA, by free memory on it)."""
        from harness.generation.generate import GenerationRequest
        from harness.pytest_plugin.scored_images import auto_batch_size

        if not self.settings.device.startswith("cuda"):
            return 4
        try:
            pipeline = self._pipeline_handle().get()
        except MissingModelError:
            return 1
        return auto_batch_size(pipeline, GenerationRequest("", None, 0, 1, 1.0, None, None))

    def run(self, batch: Batch) -> BatchResult:
        self._exit_if_asked(batch)
        self._receive_entries(batch.entries)
        for item in batch.items:
            self.images.plan(item.key, item.case, item.seed)
        results = [self._run_item(batch, item) for item in batch.items]
        cache_problem = next(
            (c.write_error for c in (self.images.cache, self.images.scores) if c is not None and c.write_error), None
        )
        if not self.options.shared_cache and self.images.cache is not None:
            shutil.rmtree(self.images.cache.root, ignore_errors=True)  # kept by the driver now
            cache_problem = None  # a scratch folder's: the driver's own cache reports its problems
        return BatchResult(batch.index, results, self._environment(), cache_problem, self.name)

    # -- one item ----------------------------------------------------------------------------------------

    def _run_item(self, batch: Batch, item: BatchItem) -> ItemResult:
        try:
            handle = self._pipeline_handle()
            uses = {section: self._use(judge) for section, judge in batch.judges.items() if section in item.case.checks}
            with warnings.catch_warnings():
                # A truncated prompt or an unwritable cache is warned about by the driver, for the item it hands out.
                warnings.simplefilter("ignore")
                scored = self.images.scored(item.key, item.case, item.seed, handle, uses)
        except MissingModelError as exc:
            return ItemResult(item.key, item.seed, None, missing=_missing(exc))
        return ItemResult(item.key, item.seed, scored, self.images.pngs.pop((item.key, item.seed), None))

    def _use(self, judge: Judge[Any, Any]) -> JudgeUse:
        from harness.judging.score_cache import judge_digest

        model = self._model(judge.fixture)
        identity = judge.cache_identity(model)
        return JudgeUse(judge, model, judge_digest(identity) if identity is not None else None)

    # -- models ------------------------------------------------------------------------------------------

    def _pipeline_handle(self) -> PipelineHandle:
        """The pipeline as case items reach it without Ray (fixtures._t2i_pipeline_handle): keyed by its files,
        loaded only when an image must be generated."""
        from harness.generation.fingerprint import files_fingerprint
        from harness.generation.pipeline_handle import PipelineHandle, loaded_fingerprint

        if self._handle is not None:
            return self._handle
        settings = self.settings
        handle = PipelineHandle(fingerprint=None, model_ref=settings.model, _load=self._load_pipeline)
        if self.images.cache is not None:
            handle.fingerprint = files_fingerprint(settings.model, settings.dtype_name, settings.device)
            if handle.fingerprint is None:  # not on disk yet: loading downloads it, then key by the files
                pipeline = handle.get()
                handle.fingerprint = files_fingerprint(
                    settings.model, settings.dtype_name, settings.device
                ) or loaded_fingerprint(pipeline)
        self._handle = handle
        return handle

    def _load_pipeline(self) -> Any:
        from harness.common import model_loading

        return self._loaded(
            "t2i_pipeline", lambda: model_loading.load_pipeline(self.settings, self._offline_for(self.settings.model))
        )

    def _model(self, fixture: str) -> Any:
        return self._loaded(fixture, lambda: self._build(fixture))

    def _loaded(self, name: str, load: Any) -> Any:
        if name in self.failed:
            raise self.failed[name].error()
        if name not in self.models:
            try:
                loaded = load()
            except MissingModelError as exc:
                self.failed[name] = _missing(exc)
                raise
            if name == "t2i_pipeline":
                loaded, info = loaded
            else:
                info = loaded.info
            self.infos[info.role] = info
            self.models[name] = loaded
        return self.models[name]

    def _build(self, fixture: str) -> Any:
        """A judge's model, built as its session fixture builds it."""

        settings = self.settings
        if fixture == "clip_scorer":
            from harness.judging.clip import build_clip_scorer

            return build_clip_scorer(settings, self._offline_for(settings.clip_model))
        if fixture == "imagenet_classifier":
            from harness.judging.resnet import build_imagenet_classifier

            return build_imagenet_classifier(settings)
        ref, where = self.options.model_refs[fixture]
        if fixture == "vqa_model":
            from harness.judging.vqa import build_vqa_model

            return build_vqa_model(settings, ref, where, self._offline_for(ref))
        if fixture == "object_detector":
            from harness.judging.objects import build_object_detector

            return build_object_detector(settings, ref, self._model("clip_scorer"), self._offline_for(ref))
        raise ValueError(f"no actor-side builder for fixture {fixture!r}")  # refused before the run

    def _offline_for(self, ref: str) -> str | None:
        """As harness.pytest_plugin.availability.offline_reason_for, probing the hub from this node."""
        if Path(ref).is_dir():
            return None
        if self._offline is None:
            from harness.pytest_plugin.availability import Reachability

            self._offline = Reachability()
        reason: str | None = self._offline.hub_offline_reason()
        return reason

    def _environment(self) -> dict[str, str]:
        from harness.common.model_loading import hub_revision

        environment = {"t2i device": self.settings.device, "t2i dtype": self.settings.dtype_name}
        infos = dict(self.infos)
        # Not loaded (every image cached): the report still names the model that made them, as without Ray.
        model = self.settings.model
        infos.setdefault("pipeline", ModelInfo("pipeline", model, hub_revision(model, "model_index.json")))
        for info in infos.values():
            environment[f"t2i {info.role}"] = f"{info.ref} @ {info.revision}"
        return environment

    # -- the driver's cache, and the test hook --------------------------------------------------------------

    def _receive_entries(self, entries: dict[str, bytes]) -> None:
        cache = self.images.cache
        if cache is None or self.options.shared_cache:
            return
        for key, data in entries.items():
            cache.put_entry(key, data)  # verified again here: what arrives damaged is generated anew

    def _exit_if_asked(self, batch: Batch) -> None:
        if not self.options.test_exit:
            return
        folder, _, spec = self.options.test_exit.partition(";")
        times = {case: int(n) for case, _, n in (part.partition("=") for part in spec.split(",") if part)}
        for case in {item.case.id for item in batch.items} & set(times):
            for attempt in range(times[case]):
                try:
                    os.close(os.open(Path(folder, f"{case}-{attempt}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    continue
                os._exit(1)  # no cleanup, no answer: what a lost node or the OOM killer leaves


def _missing(exc: MissingModelError) -> MissingModel:
    return MissingModel(str(exc), exc.model, exc.key, exc.summary)
