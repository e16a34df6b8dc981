"""Turn prompts and seeds into images with a diffusers pipeline, one batched call per group."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class GenerationRequest:
    """Everything that decides an image's pixels, apart from the model."""

    prompt: str
    negative_prompt: str | None
    seed: int
    steps: int
    guidance_scale: float
    width: int | None
    height: int | None

    @property
    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one pipeline call."""
        return (self.steps, self.guidance_scale, self.width, self.height, self.negative_prompt is None)


@dataclass
class GeneratedImage:
    image: Image.Image | None
    fault: str | None  # why the output is not an image that can be scored
    seconds: float  # this image's share of the pipeline call


def generate(pipeline: Any, requests: Sequence[GenerationRequest]) -> list[GeneratedImage]:
    """Generate one image per request in a single pipeline call.

    Each image gets its own CPU generator seeded with its seed, so an image does not depend on
    the batch it was made in, nor on the device.
    """
    import torch

    if not requests:
        return []
    first = requests[0]
    if any(r.batch_key != first.batch_key for r in requests):
        raise ValueError("requests in one pipeline call must share steps, guidance, size and negative-prompt use")
    negative = None if first.negative_prompt is None else [r.negative_prompt for r in requests]
    started = time.perf_counter()
    output = pipeline(
        prompt=[r.prompt for r in requests],
        negative_prompt=negative,
        guidance_scale=first.guidance_scale,
        num_inference_steps=first.steps,
        width=first.width,
        height=first.height,
        generator=[torch.Generator("cpu").manual_seed(r.seed) for r in requests],
        output_type="np",
    )
    seconds = (time.perf_counter() - started) / len(requests)
    nsfw = getattr(output, "nsfw_content_detected", None) or [False] * len(requests)
    return [_to_result(array, bool(flagged), seconds) for array, flagged in zip(output.images, nsfw, strict=True)]


def _to_result(array: Any, flagged: bool, seconds: float) -> GeneratedImage:
    import numpy as np
    from PIL import Image

    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        return GeneratedImage(
            None,
            f"the pipeline produced {bad} NaN/inf pixel values (typically an fp16 overflow in the VAE; "
            "try --t2i-dtype=float32 or bfloat16)",
            seconds,
        )
    # Same rounding as diffusers' numpy_to_pil, so the PNG equals output_type="pil".
    pixels = (array * 255).round().clip(0, 255).astype("uint8")
    if flagged:
        return GeneratedImage(None, "the pipeline's safety checker flagged this image and blanked it", seconds)
    if pixels.max() == 0:
        return GeneratedImage(
            None, "the image is entirely black (a safety checker's blank, or a broken VAE decode)", seconds
        )
    return GeneratedImage(Image.fromarray(pixels), None, seconds)
