"""Small JPEG data URIs of generated images, for self-contained pages (report, summary, comparison)."""

from __future__ import annotations

import base64
import io
from pathlib import Path


def thumbnail_data_uri(png_path: Path, px: int, quality: int = 80) -> str:
    """A JPEG data URI no larger than ``px`` on either side."""
    from PIL import Image

    with Image.open(png_path) as opened:
        image = opened.convert("RGB")
    image.thumbnail((px, px))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
