"""The on-disk image cache: keys, entry integrity, atomic writes, and the pipeline fingerprint."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from harness.cases.case_file import load_case_file
from harness.generation.fingerprint import (
    EDGE_BYTES,
    FULL_HASH_LIMIT,
    LOCAL_MODEL,
    directory_fingerprint,
    pipeline_fingerprint,
)
from harness.generation.generate import GenerationRequest, generate
from harness.generation.image_cache import CHUNK_KEY, CHUNK_META, CHUNK_PIXELS, ImageCache, cache_key

if TYPE_CHECKING:
    from tiny_models import TinyModels

FINGERPRINT = {
    "model": "org/model",
    "revision": "0123abcd",
    "pipeline": "diffusers.StableDiffusionPipeline",
    "scheduler": "diffusers.DDIMScheduler",
    "scheduler_config": '{"timestep_spacing":"leading"}',
    "dtype": "torch.float16",
    "device": "cuda",
    "diffusers": "0.42.1",
    "transformers": "5.0.0",
    "torch": "2.8.0",
}
REQUEST = GenerationRequest("an owl on a branch", None, 0, 30, 7.5, None, None)


def random_image(width: int = 48, height: int = 32, seed: int = 0) -> Image.Image:
    # Not square, so a swapped width and height cannot pass unnoticed.
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def stored_entries(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def cache(tmp_path: Path) -> ImageCache:
    return ImageCache(tmp_path / "cache")


@pytest.fixture
def key() -> str:
    return cache_key(FINGERPRINT, REQUEST)


# Keys


def test_key_is_a_stable_sha256_hex_digest() -> None:
    import hashlib

    key = cache_key(FINGERPRINT, REQUEST)
    # The documented construction, computed independently: sha256 of canonical JSON (sorted keys, no
    # spaces) of the key format, the model fingerprint and every field of the request.
    request = {**dataclasses.asdict(REQUEST), "guidance_scale": float(REQUEST.guidance_scale)}
    canonical = json.dumps(
        {"format": 1, "model": FINGERPRINT, "request": request},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert key == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert cache_key(dict(reversed(FINGERPRINT.items())), dataclasses.replace(REQUEST)) == key


REQUEST_CHANGES = {
    "prompt": "an owl in flight",
    "negative_prompt": "blurry",
    "seed": 1,
    "steps": 31,
    "guidance_scale": 7.0,
    "width": 512,
    "height": 512,
}


def test_every_request_field_is_tested_as_a_key_input() -> None:
    # A new generation parameter goes into the key automatically; this makes it get a test too.
    assert {f.name for f in dataclasses.fields(GenerationRequest)} == set(REQUEST_CHANGES)


@pytest.mark.parametrize(("field", "value"), REQUEST_CHANGES.items(), ids=list(REQUEST_CHANGES))
def test_key_changes_with_each_request_field(field: str, value: Any) -> None:
    changed = dataclasses.replace(REQUEST, **{field: value})
    assert cache_key(FINGERPRINT, changed) != cache_key(FINGERPRINT, REQUEST)


def test_empty_and_absent_negative_prompts_have_different_keys() -> None:
    # Some pipelines (SDXL's force_zeros_for_empty_prompt) treat them differently.
    empty = dataclasses.replace(REQUEST, negative_prompt="")
    assert cache_key(FINGERPRINT, empty) != cache_key(FINGERPRINT, REQUEST)


def test_whole_number_guidance_shares_the_key_of_its_float() -> None:
    as_int = dataclasses.replace(REQUEST, guidance_scale=7)
    as_float = dataclasses.replace(REQUEST, guidance_scale=7.0)
    assert cache_key(FINGERPRINT, as_int) == cache_key(FINGERPRINT, as_float)


FINGERPRINT_CHANGES = {
    "model": "org/other-model",
    "revision": "4567cdef",
    "pipeline": "diffusers.StableDiffusionXLPipeline",
    "scheduler": "diffusers.EulerDiscreteScheduler",
    "scheduler_config": '{"timestep_spacing":"trailing"}',
    "dtype": "torch.bfloat16",
    "device": "mps",
    "diffusers": "0.43.0",
    "transformers": "5.1.0",
    "torch": "2.9.0",
}


@pytest.mark.parametrize(("field", "value"), FINGERPRINT_CHANGES.items(), ids=list(FINGERPRINT_CHANGES))
def test_key_changes_with_each_fingerprint_field(field: str, value: str) -> None:
    assert cache_key({**FINGERPRINT, field: value}, REQUEST) != cache_key(FINGERPRINT, REQUEST)


def test_key_takes_only_the_fingerprint_and_the_request() -> None:
    assert list(inspect.signature(cache_key).parameters) == ["fingerprint", "request"]
    request_fields = {f.name for f in dataclasses.fields(GenerationRequest)}
    assert not request_fields & {"id", "clip", "labels", "resnet", "top_k", "min_prob", "tags", "skip", "xfail"}


CASE_A = """\
cases:
  - id: owl-a
    prompt: "an owl on a branch"
    negative_prompt: "blurry"
    steps: 30
    guidance_scale: 7
    seeds: [0, 1]
    clip:
      expect: "an owl"
      distractors: ["a hawk"]
      min_prob: 0.5
    resnet:
      expect: ["great grey owl"]
      top_k: 1
    tags: [animals]
"""
# Same generation settings; different id, labels, thresholds, ResNet classes, tags and xfail.
CASE_B = """\
defaults:
  tags: [birds, slow]
cases:
  - id: owl-b
    prompt: "an owl on a branch"
    negative_prompt: "blurry"
    steps: 30
    guidance_scale: 7.0
    seeds: [0, 1]
    clip:
      expect: "a great grey owl"
      distractors: ["a falcon", "a crow"]
      min_prob: 0.9
    resnet:
      expect: ["great grey owl", "kite"]
      top_k: 5
    xfail: "flaky on fp16"
"""


def request_for(case: Any, seed: int) -> GenerationRequest:
    # By field name: every request field must be a generation setting of the case.
    names = [f.name for f in dataclasses.fields(GenerationRequest) if f.name != "seed"]
    return GenerationRequest(seed=seed, **{name: getattr(case, name) for name in names})


def test_cases_differing_only_in_checks_tags_and_ids_share_keys(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(CASE_A, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(CASE_B, encoding="utf-8")
    (tmp_path / "c.yaml").write_text(CASE_A.replace("steps: 30", "steps: 31"), encoding="utf-8")
    [case_a] = load_case_file(tmp_path / "a.yaml")
    [case_b] = load_case_file(tmp_path / "b.yaml")
    [case_c] = load_case_file(tmp_path / "c.yaml")
    assert (case_a.checks["clip"], case_a.checks.get("resnet"), case_a.tags, case_a.id) != (
        case_b.checks["clip"],
        case_b.checks.get("resnet"),
        case_b.tags,
        case_b.id,
    )
    for seed in (0, 1):
        assert request_for(case_a, seed) == request_for(case_b, seed)
        assert cache_key(FINGERPRINT, request_for(case_a, seed)) == cache_key(FINGERPRINT, request_for(case_b, seed))
        # ...while a generation setting still regenerates.
        assert cache_key(FINGERPRINT, request_for(case_a, seed)) != cache_key(FINGERPRINT, request_for(case_c, seed))


# Entries


def test_get_after_put_returns_identical_pixels(cache: ImageCache, key: str) -> None:
    image = random_image()
    cache.put(key, image, {"prompt": REQUEST.prompt})
    cached = cache.get(key)
    assert cached is not None
    assert (cached.mode, cached.size) == ("RGB", (48, 32))
    assert cached.tobytes() == image.tobytes()


def test_get_of_an_absent_key_is_a_miss(cache: ImageCache, key: str) -> None:
    assert cache.get(key) is None
    assert not cache.root.exists()


def test_entry_is_one_sharded_png_recording_key_pixels_and_meta(cache: ImageCache, key: str) -> None:
    meta = {"prompt": "un hibou sur une branche, 夜", "seed": 0}
    path = cache.put(key, random_image(), meta)
    assert path == cache.path_for(key) == cache.root / key[:2] / f"{key}.png"
    assert stored_entries(cache.root) == [f"{key[:2]}/{key}.png"]
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.text[CHUNK_KEY] == key  # type: ignore[attr-defined]
        assert len(png.text[CHUNK_PIXELS]) == 64  # type: ignore[attr-defined]
        assert json.loads(png.text[CHUNK_META]) == meta  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["", "../" + "a" * 61, "A" * 64, "a" * 63, "a" * 65, "g" * 64])
def test_only_sha256_hex_digests_are_keys(cache: ImageCache, bad: str) -> None:
    with pytest.raises(ValueError, match="not a cache key"):
        cache.path_for(bad)


def test_only_rgb_images_are_stored(cache: ImageCache, key: str) -> None:
    with pytest.raises(ValueError, match="RGB images only, got mode 'RGBA'"):
        cache.put(key, random_image().convert("RGBA"), {})
    assert not cache.root.exists()


def test_put_replaces_an_existing_entry(cache: ImageCache, key: str) -> None:
    cache.put(key, random_image(seed=0), {})
    replacement = random_image(seed=1)
    cache.put(key, replacement, {})
    cached = cache.get(key)
    assert cached is not None and cached.tobytes() == replacement.tobytes()
    assert stored_entries(cache.root) == [f"{key[:2]}/{key}.png"]


def test_generated_image_round_trips(cache: ImageCache, tiny_pipeline: Any) -> None:
    request = GenerationRequest("an owl on a branch", None, 0, 1, 7.5, 32, 32)
    [generated] = generate(tiny_pipeline, [request])
    assert generated.image is not None
    key = cache_key(pipeline_fingerprint(tiny_pipeline, "org/tiny", "abc"), request)
    cache.put(key, generated.image, {})
    cached = cache.get(key)
    assert cached is not None and cached.tobytes() == generated.image.tobytes()


def assert_bad_entry_is_a_miss_and_removed(cache: ImageCache, key: str) -> None:
    __tracebackhide__ = True
    assert cache.get(key) is None
    assert not cache.path_for(key).exists(), "the bad entry was left in place"
    assert cache.get(key) is None


@pytest.mark.parametrize(
    "keep",
    [0, 8, 100, 0.5, -12, -1],
    ids=["empty", "signature-only", "first-100-bytes", "half", "without-IEND", "without-last-byte"],
)
def test_truncated_entry_is_a_miss_and_removed(cache: ImageCache, key: str, keep: float) -> None:
    path = cache.put(key, random_image(), {})
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data) if keep < 0 else keep
    path.write_bytes(data[:cut])
    assert_bad_entry_is_a_miss_and_removed(cache, key)


def test_entry_with_bytes_appended_is_a_miss_and_removed(cache: ImageCache, key: str) -> None:
    path = cache.put(key, random_image(), {})
    with open(path, "ab") as handle:
        handle.write(b"\0" * 16)
    assert_bad_entry_is_a_miss_and_removed(cache, key)


def idat_data_span(png: bytes) -> tuple[int, int]:
    """(start, end) of the first IDAT chunk's compressed pixel data."""
    offset = 8  # the PNG signature
    while offset < len(png):
        length = int.from_bytes(png[offset : offset + 4], "big")
        if png[offset + 4 : offset + 8] == b"IDAT":
            return offset + 8, offset + 8 + length
        offset += 12 + length
    raise AssertionError("no IDAT chunk")


@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
def test_flipped_byte_in_pixel_data_is_a_miss_and_removed(cache: ImageCache, key: str, where: float) -> None:
    path = cache.put(key, random_image(), {})
    data = bytearray(path.read_bytes())
    start, end = idat_data_span(bytes(data))
    data[start + int((end - start - 1) * where)] ^= 0x01
    path.write_bytes(bytes(data))
    assert_bad_entry_is_a_miss_and_removed(cache, key)


def test_flipped_byte_in_the_recorded_digest_is_a_miss_and_removed(cache: ImageCache, key: str) -> None:
    path = cache.put(key, random_image(), {})
    data = path.read_bytes()
    with Image.open(path) as png:
        digest = png.text[CHUNK_PIXELS].encode()  # type: ignore[attr-defined]
    path.write_bytes(data.replace(digest, digest[:-1] + (b"0" if digest[-1:] != b"0" else b"1")))
    assert_bad_entry_is_a_miss_and_removed(cache, key)


def test_valid_png_whose_pixels_differ_from_the_digest_is_a_miss(cache: ImageCache, key: str) -> None:
    # Well-formed file, plausible chunks, other pixels: only the pixel digest can tell.
    from PIL.PngImagePlugin import PngInfo

    path = cache.put(key, random_image(seed=0), {})
    with Image.open(path) as png:
        chunks = dict(png.text)  # type: ignore[attr-defined]
    info = PngInfo()
    for name, value in chunks.items():
        info.add_text(name, value)
    random_image(seed=1).save(path, format="PNG", pnginfo=info)
    assert_bad_entry_is_a_miss_and_removed(cache, key)


def test_entry_of_another_key_is_a_miss_and_removed(cache: ImageCache, key: str) -> None:
    other = cache_key(FINGERPRINT, dataclasses.replace(REQUEST, seed=1))
    source = cache.put(other, random_image(), {})
    cache.path_for(key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, cache.path_for(key))
    assert_bad_entry_is_a_miss_and_removed(cache, key)
    assert cache.get(other) is not None


@pytest.mark.parametrize(
    "content", [b"", b"not a png at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 64], ids=["empty", "text", "header-only"]
)
def test_non_png_entry_is_a_miss_and_removed(cache: ImageCache, key: str, content: bytes) -> None:
    cache.path_for(key).parent.mkdir(parents=True)
    cache.path_for(key).write_bytes(content)
    assert_bad_entry_is_a_miss_and_removed(cache, key)


def test_put_leaves_no_temporary_files(cache: ImageCache) -> None:
    keys = [cache_key(FINGERPRINT, dataclasses.replace(REQUEST, seed=seed)) for seed in range(5)]
    for key in keys:
        cache.put(key, random_image(), {})
    assert stored_entries(cache.root) == sorted(f"{k[:2]}/{k}.png" for k in keys)


class Interrupted(Exception):
    pass


def test_interrupted_put_keeps_the_previous_entry_and_leaves_no_partial_file(
    cache: ImageCache, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = random_image(seed=0)
    cache.put(key, old, {})

    def interrupted_fsync(fd: int) -> None:
        raise Interrupted  # after the new bytes are written to the temp file, before the rename

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(Interrupted):
        cache.put(key, random_image(seed=1), {})
    monkeypatch.undo()
    assert stored_entries(cache.root) == [f"{key[:2]}/{key}.png"]
    cached = cache.get(key)
    assert cached is not None and cached.tobytes() == old.tobytes()


def test_concurrent_puts_and_gets_see_whole_entries_only(cache: ImageCache, key: str) -> None:
    versions = {random_image(seed=seed).tobytes() for seed in range(2)}
    failures: list[BaseException] = []
    seen: list[bytes | None] = []

    def writer(seed: int) -> None:
        try:
            for _ in range(15):
                cache.put(key, random_image(seed=seed), {"writer": seed})
        except BaseException as exc:
            failures.append(exc)

    def reader() -> None:
        try:
            for _ in range(30):
                image = cache.get(key)
                seen.append(None if image is None else image.tobytes())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (0, 1, 0, 1)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    # A reader may miss before the first rename lands, but never sees a mixed or partial image.
    assert {pixels for pixels in seen if pixels is not None} <= versions
    assert stored_entries(cache.root) == [f"{key[:2]}/{key}.png"]
    final = cache.get(key)
    assert final is not None and final.tobytes() in versions


# Fingerprint


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_models: TinyModels) -> Any:
    return load_tiny_pipeline(tiny_models.pipeline_dir)


def load_tiny_pipeline(directory: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(directory, use_safetensors=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_fingerprint_describes_the_pipeline(tiny_models: TinyModels, tiny_pipeline: Any) -> None:
    import diffusers
    import torch
    import transformers

    fingerprint = pipeline_fingerprint(tiny_pipeline, str(tiny_models.pipeline_dir), "local dir")
    assert all(isinstance(value, str) for value in fingerprint.values())
    assert json.loads(json.dumps(fingerprint)) == fingerprint
    assert fingerprint["model"] == LOCAL_MODEL
    assert fingerprint["revision"].startswith("sha256:")
    assert fingerprint["pipeline"].endswith(".StableDiffusionPipeline")
    assert fingerprint["scheduler"].endswith(".DDIMScheduler")
    assert json.loads(fingerprint["scheduler_config"])["beta_schedule"] == "scaled_linear"
    assert "_diffusers_version" not in json.loads(fingerprint["scheduler_config"])
    assert (fingerprint["dtype"], fingerprint["device"]) == ("torch.float32", "cpu")
    assert (fingerprint["diffusers"], fingerprint["transformers"], fingerprint["torch"]) == (
        diffusers.__version__,
        transformers.__version__,
        torch.__version__,
    )


def test_fingerprint_of_a_hub_model_uses_its_revision(tiny_pipeline: Any) -> None:
    fingerprint = pipeline_fingerprint(tiny_pipeline, "org/model", "0123abcd")
    assert (fingerprint["model"], fingerprint["revision"]) == ("org/model", "0123abcd")
    assert pipeline_fingerprint(tiny_pipeline, "org/model", "4567cdef") != fingerprint


def test_fingerprint_is_stable_across_loads(tiny_models: TinyModels, tiny_pipeline: Any) -> None:
    again = load_tiny_pipeline(tiny_models.pipeline_dir)
    ref = str(tiny_models.pipeline_dir)
    assert pipeline_fingerprint(again, ref, "local dir") == pipeline_fingerprint(tiny_pipeline, ref, "local dir")


def test_fingerprint_of_a_local_model_ignores_where_it_lives(
    tiny_models: TinyModels, tiny_pipeline: Any, tmp_path: Path
) -> None:
    # A copy (new mtimes, new path, as on a shared volume) with hf-download metadata beside it.
    copy = Path(shutil.copytree(tiny_models.pipeline_dir, tmp_path / "elsewhere"))
    (copy / ".cache" / "huggingface").mkdir(parents=True)
    (copy / ".cache" / "huggingface" / "unet.metadata").write_text(str(time.time()))
    assert pipeline_fingerprint(load_tiny_pipeline(copy), str(copy), "local dir") == pipeline_fingerprint(
        tiny_pipeline, str(tiny_models.pipeline_dir), "local dir"
    )


def test_fingerprint_changes_when_a_config_file_changes(
    tiny_models: TinyModels, tiny_pipeline: Any, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_models.pipeline_dir, tmp_path / "edited"))
    config_path = copy / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["scaling_factor"] = 0.13025
    config_path.write_text(json.dumps(config))
    edited = pipeline_fingerprint(load_tiny_pipeline(copy), str(copy), "local dir")
    original = pipeline_fingerprint(tiny_pipeline, str(tiny_models.pipeline_dir), "local dir")
    assert edited["revision"] != original["revision"]
    assert {k for k in original if original[k] != edited[k]} == {"revision"}


def test_fingerprint_changes_when_the_scheduler_is_swapped(tiny_models: TinyModels) -> None:
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    pipeline = load_tiny_pipeline(tiny_models.pipeline_dir)
    ref = str(tiny_models.pipeline_dir)
    original = pipeline_fingerprint(pipeline, ref, "local dir")
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    assert pipeline_fingerprint(pipeline, ref, "local dir") == original, "an identical scheduler regenerated"
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config, timestep_spacing="trailing")
    trailing = pipeline_fingerprint(pipeline, ref, "local dir")
    assert {k for k in original if original[k] != trailing[k]} == {"scheduler_config"}
    pipeline.scheduler = EulerDiscreteScheduler.from_config(pipeline.scheduler.config)
    assert pipeline_fingerprint(pipeline, ref, "local dir")["scheduler"] != original["scheduler"]


def test_fingerprint_changes_with_the_dtype(tiny_models: TinyModels) -> None:
    import torch

    pipeline = load_tiny_pipeline(tiny_models.pipeline_dir)
    original = pipeline_fingerprint(pipeline, "org/model", "0123abcd")
    pipeline.to(dtype=torch.bfloat16)
    assert pipeline_fingerprint(pipeline, "org/model", "0123abcd")["dtype"] == "torch.bfloat16" != original["dtype"]


def write_sparse(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        handle.truncate(size)


def patch_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\x01")


def test_big_weight_files_are_sampled_so_fingerprinting_stays_fast(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    write_sparse(weights, 5 * 2**30)  # a 5 GiB file that takes no disk space
    started = time.perf_counter()
    baseline = directory_fingerprint(model)
    assert time.perf_counter() - started < 1.0
    seen = {baseline}
    for offset in (0, EDGE_BYTES - 1, 5 * 2**30 - 1):  # the head and the tail are read
        patch_byte(weights, offset)
        seen.add(directory_fingerprint(model))
    write_sparse(weights, 5 * 2**30 + 8)
    seen.add(directory_fingerprint(model))
    assert len(seen) == 5


def test_small_files_are_hashed_whole(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "weights.safetensors"
    write_sparse(weights, FULL_HASH_LIMIT)
    before = directory_fingerprint(model)
    patch_byte(weights, FULL_HASH_LIMIT // 2)  # the middle, which a sampled hash could miss
    assert directory_fingerprint(model) != before


def test_renaming_a_file_changes_the_fingerprint(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "a.json").write_text("{}")
    before = directory_fingerprint(model)
    (model / "a.json").rename(model / "b.json")
    assert directory_fingerprint(model) != before
