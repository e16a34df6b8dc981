"""Small JPEG data URIs of generated images, for self-contained pages (report, summary, comparison)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path


def thumbnail_data_uri(png_path: Path, px: int, quality: int = 80) -> str:
    """A JPEG data URI no larger than ``px`` on either side."""
    return thumbnail_data_uris(png_path, [(px, quality)])[0]


def thumbnail_data_uris(png_path: Path, sizes: Sequence[tuple[int, int]]) -> list[str]:
    """JPEG data URIs of one image at several (px, quality): the PNG is decoded once for all."""
    from PIL import Image

    with Image.open(png_path) as opened:
        image = opened.convert("RGB")
    uris = []
    for px, quality in sizes:
        small = image.copy()
        small.thumbnail((px, px))
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=quality)
        uris.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return uris
