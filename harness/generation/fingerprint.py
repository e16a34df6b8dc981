"""Identify a loaded text-to-image pipeline by everything about it that decides its pixels.

The image cache keys entries by this fingerprint plus the generation request; computing it reads
every small file of a local model but only a few MiB of each big weight file, so it is cheap once per session.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Stands in for a local directory's path in the fingerprint: its content decides the pixels, its
# location does not, so a model copied or mounted elsewhere (another machine, a shared volume) still hits.
LOCAL_MODEL = "local dir"

# Files up to this size are hashed whole; bigger ones (weights) are sampled.
FULL_HASH_LIMIT = 4 * 2**20
# Configs, tokenizers and custom pipeline code are hashed whole at any size: small edits to them matter.
FULL_HASH_SUFFIXES = frozenset({".json", ".txt", ".py", ".yaml", ".yml", ".model"})
# A weight file's head (safetensors header: tensor names, dtypes, shapes, offsets, then the first
# tensors), its tail, and a few blocks between: any retraining, merge or re-quantization changes them.
EDGE_BYTES = 2**20
MIDDLE_SAMPLES = 8
MIDDLE_SAMPLE_BYTES = 64 * 2**10
_READ_CHUNK = 2**20


def pipeline_fingerprint(pipeline: Any, model_ref: str, revision: str) -> dict[str, str]:
    """A JSON-able description of ``pipeline`` for cache keys: equal fingerprints make equal pixels.

    ``model_ref`` is what the pipeline was loaded from (a hub repo id or a local directory) and
    ``revision`` the hub commit it resolved to; for a local directory the revision is replaced
    by a fingerprint of the directory's content.
    """
    import diffusers
    import torch
    import transformers

    model, revision = model_identity(model_ref, revision)
    scheduler = pipeline.scheduler
    # Why each field is in the key:
    # - model, revision: the weights and configs (a hub commit is immutable; a local dir is hashed);
    # - pipeline, scheduler: the sampling code, which a custom pipeline or a swapped scheduler replaces;
    # - scheduler_config: the same scheduler class samples differently with, e.g., other timestep spacing;
    # - dtype: fp16/bf16/fp32 arithmetic round differently, so the images differ;
    # - device: cpu, cuda and mps kernels differ numerically (the generators are always CPU, so only
    #   the arithmetic differs; two GPUs of one type are treated as interchangeable);
    # - diffusers, transformers, torch: pipeline, text-encoder and kernel code changes between releases.
    return {
        "model": model,
        "revision": revision,
        "pipeline": _qualified_name(type(pipeline)),
        "scheduler": _qualified_name(type(scheduler)),
        "scheduler_config": scheduler_config_json(scheduler.config),
        "dtype": str(pipeline.dtype),
        "device": pipeline.device.type,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def model_identity(model_ref: str, revision: str) -> tuple[str, str]:
    """(model, revision) for cache keys: a hub repo id and its commit, or a local dir by its content."""
    local = Path(model_ref).expanduser()
    if local.is_dir():
        return LOCAL_MODEL, f"sha256:{directory_fingerprint(local)}"
    return model_ref, revision


@dataclass(frozen=True)
class ModelFiles:
    """A diffusers model's identity and configs, read from disk without loading it."""

    model: str
    revision: str
    pipeline_class: str
    scheduler_config: dict[str, Any]


def model_files(model_ref: str, *, with_revision: bool = True) -> ModelFiles | None:
    """The model's files as a local dir or in the Hugging Face cache; None when they are not on disk.

    A local dir's revision is a hash of its content; ``with_revision=False`` skips it (revision "").
    """
    local = Path(model_ref).expanduser()
    if local.is_dir():
        root, model, revision = local, LOCAL_MODEL, ""
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            index = try_to_load_from_cache(model_ref, "model_index.json")
        except ValueError:  # not a valid repo id either (a mistyped path): nothing on disk
            return None
        if not isinstance(index, str):
            return None
        root, model, revision = Path(index).parent, model_ref, Path(index).parent.name
    try:
        model_index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
        scheduler = json.loads((root / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if model == LOCAL_MODEL and with_revision:
        revision = f"sha256:{directory_fingerprint(local)}"
    return ModelFiles(model, revision, str(model_index.get("_class_name")), scheduler)


def files_fingerprint(model_ref: str, dtype_name: str, device: str) -> dict[str, str] | None:
    """The fingerprint of the pipeline that loading ``model_ref`` gives, from its files alone.

    Used while the pipeline is the plugin's own, unmodified one, so that runs whose images are all
    cached never load the model. Its keys differ from pipeline_fingerprint's ("source"), so entries
    made by a loaded, modified pipeline are never mistaken for these.
    """
    from harness.common.versions import package_version

    files = model_files(model_ref)
    if files is None:
        return None
    return {
        "source": "files",
        "model": files.model,
        "revision": files.revision,
        "pipeline": files.pipeline_class,
        "scheduler": str(files.scheduler_config.get("_class_name")),
        "scheduler_config": scheduler_config_json(files.scheduler_config),
        "dtype": f"torch.{dtype_name}",
        "device": device.split(":")[0],
        "diffusers": package_version("diffusers"),
        "transformers": package_version("transformers"),
        "torch": package_version("torch"),
    }


def scheduler_config_json(config: Any) -> str:
    """The scheduler's settings as canonical JSON, without diffusers' bookkeeping entries.

    Entries starting with '_' (class name, the diffusers version that saved the file, which keys
    took defaults) say where a config came from, not how it samples; the class and the running
    diffusers version are fingerprinted on their own.
    """
    settings = {key: value for key, value in dict(config).items() if not key.startswith("_")}
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=_jsonable)


def directory_fingerprint(root: Path) -> str:
    """sha256 over the sorted relative paths and content digests of a model directory's files."""
    digest = hashlib.sha256()
    for relative, path in sorted(_model_files(Path(root))):
        # NUL cannot occur in a path or a hex digest, so the framing is unambiguous.
        digest.update(f"{relative}\0{file_digest(path)}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of its size and sampled blocks if it is a big weight file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size <= FULL_HASH_LIMIT or path.suffix.lower() in FULL_HASH_SUFFIXES:
            digest.update(b"whole\0")
            for block in iter(lambda: handle.read(_READ_CHUNK), b""):
                digest.update(block)
        else:
            # The size is hashed too: a truncated or appended file changes it even when the samples do not.
            digest.update(f"sampled\0{size}\0".encode())
            for offset, length in _sample_ranges(size):
                handle.seek(offset)
                digest.update(handle.read(length))
    return digest.hexdigest()


def _sample_ranges(size: int) -> Iterator[tuple[int, int]]:
    yield 0, EDGE_BYTES
    span = size - 2 * EDGE_BYTES - MIDDLE_SAMPLE_BYTES
    for index in range(1, MIDDLE_SAMPLES + 1):
        yield EDGE_BYTES + span * index // (MIDDLE_SAMPLES + 1), MIDDLE_SAMPLE_BYTES
    yield size - EDGE_BYTES, EDGE_BYTES


def _model_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every file under root, following links, skipping hidden ones.

    Hidden entries are skipped because they never hold model data but do change on their own:
    `hf download --local-dir` keeps timestamped metadata under .cache/, and .git/ changes on fetch.
    __pycache__ holds bytecode of custom pipeline code, which is hashed as source instead.
    """
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        parts = Path(folder).relative_to(root).parts
        ancestors = {os.path.realpath(root.joinpath(*parts[:depth])) for depth in range(len(parts))}
        if os.path.realpath(folder) in ancestors:
            # A symlink back up the tree: following it would never end.
            dirnames[:] = []
            continue
        dirnames[:] = [name for name in dirnames if not name.startswith(".") and name != "__pycache__"]
        for name in filenames:
            path = Path(folder) / name
            if not name.startswith(".") and path.is_file():
                yield path.relative_to(root).as_posix(), path


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _jsonable(value: Any) -> Any:
    # numpy arrays and tensors (e.g. trained_betas) become exact lists, not their truncated repr.
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)
