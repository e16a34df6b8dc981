"""Load the three models through their real loading paths, and explain clearly when one is missing."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

    from harness.pytest_plugin.options import Settings


T = TypeVar("T")


class MissingModelError(Exception):
    """A model that is neither cached locally nor downloadable; the message says how to fix it.

    The first item failing with a given ``key`` shows the whole message, later ones ``summary`` only.
    """

    def __init__(self, message: str, *, model: str, key: str | None = None, summary: str | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.key = key if key is not None else model
        self.summary = summary or f"model {model!r} is unavailable (explained at the first item that needed it)"


@dataclass(frozen=True)
class ModelInfo:
    """What the report's environment section says about a loaded model."""

    role: str
    ref: str
    revision: str


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or os.sep in ref.strip("/").replace("/", "", 1) or ref.count("/") > 1


def hub_revision(ref: str, probe_file: str) -> str:
    """The commit a hub model resolved to, read from the local cache; 'local dir' for a directory."""
    if Path(ref).is_dir():
        return "local dir"
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(ref, probe_file)
    except ValueError:  # not a valid repo id
        return "unknown"
    if isinstance(cached, str):
        # The cache lays files out as .../snapshots/<commit>/<file>.
        return Path(cached).parent.name
    return "unknown"


def missing_model_message(role: str, ref: str, option: str, reason: str, required: str | None = None) -> str:
    """Why a hub model or local dir cannot be loaded, and how to fix it; ``required`` is the file that marks it."""
    from huggingface_hub import constants

    if Path(ref).is_dir() and required is not None and not (Path(ref) / required).is_file():
        return (
            f"The {role} {ref!r} ({option}) is a directory without {required}, so not a model directory. "
            f"Point {option} at a directory written by save_pretrained(), or at a Hugging Face repo id."
        )
    if _looks_like_path(ref) and not Path(ref).exists():
        return (
            f"The {role} {ref!r} ({option}) looks like a local directory, but it does not exist "
            f"(looked in {Path(ref).expanduser().resolve()}). Point {option} at a directory written by "
            "save_pretrained(), or at a Hugging Face repo id."
        )
    return (
        f"The {role} {ref!r} ({option}) is neither in the local Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) nor downloadable from here ({reason}). "
        f"Fix: download it once on a machine with network access (`hf download {ref}`, with HF_HOME "
        f"pointing at the cache you will use), or point {option} at a local directory holding the model."
    )


def missing_resnet_message(weights: str, cache: Path, url: str, reason: str) -> str:
    return (
        f"The ResNet-50 weights {weights} (--t2i-resnet-weights) are neither in torch's cache "
        f"({cache}) nor downloadable from here ({reason}). Fix: download {url} "
        "once to that path (or set TORCH_HOME), or point --t2i-resnet-weights at a local "
        "state-dict file (.safetensors, .pt or .pth)."
    )


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


@contextlib.contextmanager
def _explain_missing(role: str, ref: str, option: str, offline_reason: str | None = None):  # type: ignore[no-untyped-def]
    try:
        yield
    except (OSError, ValueError) as exc:
        # huggingface_hub and transformers raise OSError subclasses (or ValueError for malformed ids)
        # when a model is neither cached nor reachable.
        reason = offline_reason if offline_reason is not None else _short_reason(exc)
        raise MissingModelError(missing_model_message(role, ref, option, reason), model=ref) from exc


@contextlib.contextmanager
def _quiet_loading():  # type: ignore[no-untyped-def]
    """Loading progress bars off (they would interleave with pytest's output), then restored."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore = []
    for module in (diffusers_logging, transformers_logging):
        if module.is_progress_bar_enabled():
            module.disable_progress_bar()
            restore.append(module)
    try:
        with warnings.catch_warnings():
            # diffusers passes an argument huggingface_hub has deprecated; not the user's to fix.
            warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated")
            yield
    finally:
        for module in restore:
            module.enable_progress_bar()


def _hub_options(offline_reason: str | None) -> dict[str, Any]:
    # With the hub unreachable, a cached model loads from the cache alone: asking the hub first would
    # only add its retries (most of a minute) before falling back to the same files.
    return {"local_files_only": True} if offline_reason is not None else {}


def load_pretrained(
    role: str, ref: str, option: str, load: Callable[[dict[str, Any]], T], offline_reason: str | None = None
) -> T:
    """Load a model or processor by its real ``from_pretrained`` path, with the harness's errors and quiet.

    For judges: ``load(hub_options)`` calls ``from_pretrained(ref, **hub_options)``. A model neither cached nor
    downloadable raises MissingModelError, one paragraph naming ``role``, ``ref`` and ``option`` and how to fix it.
    ``offline_reason`` (harness.pytest_plugin.availability.offline_reason_for): why the hub is unreachable, so
    only the local cache is read; None to ask the hub as usual.
    """
    with _explain_missing(role, ref, option, offline_reason), _quiet_loading():
        return load(_hub_options(offline_reason))


def load_pipeline(settings: Settings, offline_reason: str | None = None) -> tuple[Any, ModelInfo]:
    """A diffusers text-to-image pipeline on the settings' device and dtype, progress bars off.

    ``offline_reason``: why the hub is unreachable (then only the local cache is read), or None.
    """
    from diffusers import AutoPipelineForText2Image

    with _explain_missing("text-to-image model", settings.model, "--t2i-model", offline_reason), _quiet_loading():
        pipeline = AutoPipelineForText2Image.from_pretrained(
            settings.model, dtype=settings.dtype, use_safetensors=True, **_hub_options(offline_reason)
        )
    pipeline.to(settings.device)
    # Progress bars would interleave with pytest's own output.
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, ModelInfo("pipeline", settings.model, hub_revision(settings.model, "model_index.json"))


def load_clip(settings: Settings, offline_reason: str | None = None) -> tuple[Any, Any, ModelInfo]:
    from transformers import CLIPModel, CLIPProcessor

    hub = _hub_options(offline_reason)
    with _explain_missing("CLIP model", settings.clip_model, "--t2i-clip-model", offline_reason), _quiet_loading():
        model = CLIPModel.from_pretrained(settings.clip_model, dtype=settings.dtype, use_safetensors=True, **hub)
        processor = CLIPProcessor.from_pretrained(settings.clip_model, **hub)
    model.to(settings.device).eval()  # type: ignore[arg-type]  # transformers types .to() as a decorator
    return model, processor, ModelInfo("clip", settings.clip_model, hub_revision(settings.clip_model, "config.json"))


def load_resnet(settings: Settings) -> tuple[torch.nn.Module, Any, tuple[str, ...], ModelInfo]:
    """ResNet-50 with preprocessing and class names from torchvision's weights metadata."""
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    source = settings.resnet_weights
    if Path(source).is_file():
        # A user's own state dict: preprocessing and class names are still ImageNet-1k's.
        weights = ResNet50_Weights.IMAGENET1K_V2
        state_dict = _read_state_dict_file(Path(source))
        revision = f"file {Path(source).name}"
    else:
        weights = resnet_weights(source)
        try:
            # Same URL and cache as resnet50(weights=...), but never unpickling arbitrary objects.
            state_dict = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise MissingModelError(
                missing_resnet_message(str(weights), resnet_cache_path(weights.url), weights.url, _short_reason(exc)),
                model=str(weights),
            ) from exc
        revision = Path(weights.url).name
    # Built on the meta device and given the loaded tensors: a real resnet50() spends 0.5 s initialising
    # 25M random weights that the state dict replaces at once (tests/test_reference.py checks the scores).
    with torch.device("meta"):
        model = resnet50()
    try:
        model.load_state_dict(state_dict, assign=True)
    except RuntimeError as exc:
        raise MissingModelError(
            f"The state dict {source} (--t2i-resnet-weights) does not fit torchvision's resnet50: "
            f"{_short_reason(exc)}. Give a file saved from torchvision.models.resnet50().state_dict().",
            model=source,
        ) from exc
    model.to(settings.device).eval()
    categories = tuple(weights.meta["categories"])
    return (
        model,
        weights.transforms(),
        categories,
        ModelInfo("resnet", str(weights) if not Path(source).is_file() else source, revision),
    )


def resnet_weights(name: str) -> Any:
    """The torchvision ResNet50_Weights member a --t2i-resnet-weights name stands for."""
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.DEFAULT if name == "DEFAULT" else ResNet50_Weights[name]


def resnet_cache_path(url: str) -> Path:
    """Where torchvision keeps downloaded weights: torch hub's checkpoints folder (TORCH_HOME moves it)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """load_state_dict_file, with a refused or unreadable file explained instead of a traceback."""
    import pickle

    try:
        return load_state_dict_file(path)
    except pickle.UnpicklingError as exc:
        # torch's own text suggests weights_only=False, which would run whatever the file holds.
        blocked = str(exc).strip().splitlines()[-3:]
        detail = next((line.strip().rstrip(".") for line in blocked if "GLOBAL" in line), "not only tensors")
        raise MissingModelError(
            f"The state dict {path} (--t2i-resnet-weights) was refused: only tensors are loaded, so that no code "
            f"in a weights file can run, and this file holds other pickled objects ({detail}). Fix: save plain "
            "tensors, preferably as safetensors: safetensors.torch.save_file(model.state_dict(), "
            "'resnet50.safetensors').",
            model=str(path),
        ) from None
    except Exception as exc:  # a truncated or foreign file: torch, zipfile and safetensors each raise their own
        raise MissingModelError(
            f"The state dict {path} (--t2i-resnet-weights) cannot be read ({_short_reason(exc)}). Give a file "
            "saved with safetensors.torch.save_file or torch.save from torchvision.models.resnet50().state_dict().",
            model=str(path),
        ) from exc


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors only: safetensors, or torch.load with weights_only=True (no code can run)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
