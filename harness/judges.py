"""Identify the two judges for the score cache: equal digests must mean equal outputs for equal pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.fingerprint import file_digest, model_identity
from harness.models import ModelInfo
from harness.options import Settings
from harness.score_cache import judge_digest
from harness.versions import package_version


def clip_judge(settings: Settings, model: Any, info: ModelInfo) -> str | None:
    """CLIP's image tower: weights and preprocessor config (a hub commit, or a local dir's content)."""
    source, revision = model_identity(settings.clip_model, info.revision)
    if revision == "unknown":  # a hub model whose commit cannot be read: no safe key
        return None
    return judge_digest(
        {
            "judge": "clip image embedding",
            "model": source,
            "revision": revision,
            "dtype": str(model.dtype),
            # cpu, cuda and mps kernels round differently; two GPUs of one type are interchangeable.
            "device": settings.device.split(":")[0],
            "transformers": package_version("transformers"),
            "torch": package_version("torch"),
        }
    )


def resnet_judge(settings: Settings, model: Any, transforms: Any, info: ModelInfo) -> str:
    """ResNet-50: its weights (a torchvision weights file, or the user's file by content) and preprocessing."""
    weights = settings.resnet_weights
    if Path(weights).is_file():
        weights = f"sha256:{file_digest(Path(weights))}"
    return judge_digest(
        {
            "judge": "resnet50 imagenet probabilities",
            "weights": weights,
            "weights_file": info.revision,
            "preprocessing": repr(transforms),
            "dtype": str(next(model.parameters()).dtype),
            "device": settings.device.split(":")[0],
            "torchvision": package_version("torchvision"),
            "torch": package_version("torch"),
        }
    )
