"""Small JPEG data URIs of generated images, for self-contained pages (report, summary, comparison)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image


def thumbnail_data_uri(image: Image, px: int, quality: int = 80) -> str:
    """A JPEG data URI no larger than ``px`` on either side."""
    return thumbnail_data_uris(image, [(px, quality)])[0]


def thumbnail_data_uris(image: Image, sizes: Sequence[tuple[int, int]]) -> list[str]:
    """JPEG data URIs of one decoded RGB image (harness.reports.run_images.run_image) at several (px, quality)."""
    return [jpeg_data_uri(fitted(image, px), quality) for px, quality in sizes]


def fitted(image: Image, px: int) -> Image:
    """A copy no larger than ``px`` on either side (the aspect ratio kept; never enlarged)."""
    small = image.copy()
    small.thumbnail((px, px))
    return small


def jpeg_data_uri(image: Image, quality: int) -> str:
    """The image at its own size as a JPEG data URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
