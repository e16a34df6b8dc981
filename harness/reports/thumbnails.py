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
    uris = []
    for px, quality in sizes:
        small = image.copy()
        small.thumbnail((px, px))
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=quality)
        uris.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return uris
