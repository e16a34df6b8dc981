"""How case items reach the pipeline: through a handle that loads it only when an image must be made.

A re-run after editing labels or thresholds finds every image in the cache and never loads the
text-to-image model. That is only safe when the cache key can be known without loading it: when the
pipeline is the plugin's own fixture, unmodified, the key comes from the model's files. A pipeline a
user's conftest.py overrides or modifies is loaded and keyed by what it actually is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PipelineHandle:
    fingerprint: dict[str, str] | None  # the cache key's model part; None: no cache for this pipeline
    model_ref: str
    _load: Callable[[], Any]
    pipeline: Any | None = None
    _tokenizer: Any = field(default=None, repr=False)

    def get(self) -> Any:
        """The pipeline, loaded on first use (through the `t2i_pipeline` fixture)."""
        if self.pipeline is None:
            self.pipeline = self._load()
        return self.pipeline

    def tokenizer(self) -> Any | None:
        """The pipeline's tokenizer, without loading the pipeline when it is not loaded yet."""
        if self.pipeline is not None:
            return getattr(self.pipeline, "tokenizer", None)
        if self._tokenizer is None:
            from harness.pytest_plugin.check_mode import load_cached_tokenizer

            self._tokenizer = load_cached_tokenizer(self.model_ref)
        return self._tokenizer


def loaded_fingerprint(pipeline: Any) -> dict[str, str] | None:
    """The cache fingerprint of a loaded pipeline; None when its model revision cannot be known."""
    from harness.common.model_loading import hub_revision
    from harness.generation.fingerprint import pipeline_fingerprint

    ref = str(getattr(pipeline, "name_or_path", "") or "")
    revision = hub_revision(ref, "model_index.json") if ref else "unknown"
    # Without a known revision two versions of a hub model would share entries: no cache.
    if not ref or (revision == "unknown" and not Path(ref).is_dir()):
        return None
    return pipeline_fingerprint(pipeline, ref, revision)


def is_pristine(pipeline: Any, model_ref: str, dtype_name: str, device: str) -> bool:
    """Whether a loaded pipeline is what loading ``model_ref`` gives: same scheduler, dtype and device."""
    from harness.generation.fingerprint import model_files, scheduler_config_json

    files = model_files(model_ref, with_revision=False)  # called per item: skip hashing a local dir
    if files is None:
        return False
    scheduler = pipeline.scheduler
    expected = type(scheduler).from_config(files.scheduler_config)
    return (
        type(scheduler).__name__ == files.scheduler_config.get("_class_name")
        and scheduler_config_json(scheduler.config) == scheduler_config_json(expected.config)
        and str(pipeline.dtype) == f"torch.{dtype_name}"
        and pipeline.device.type == device.split(":")[0]
    )
