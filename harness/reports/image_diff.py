"""How two images of one item differ, pixel by pixel: a heatmap and its numbers (compare.html, the review server).

A pixel's difference is the largest of its three channels' absolute differences, in 0-255 units: a change in
any one channel counts in full, and a pixel either changed or did not. The statistics are of those values over
the full-resolution images: the largest, the mean and the share of pixels whose difference is not 0.

The heatmap draws each pixel's difference on a perceptual colour ramp: black where nothing changed, then
inferno's hues from a dark purple to pale yellow, with lightness rising evenly (equal steps of difference look
like equal steps of brightness). It is amplified: the largest difference of the pair is drawn at full scale,
so even a one-level change is visible, and the stats (``DiffStats.describe``) say what full scale stands for.
Identical images give an all-black heatmap.

Images of different sizes are refused (``SizeMismatch``) rather than resampled: a per-pixel difference of a
resampled image measures the resampling, not the change, and the size change is itself the finding.

PIL and numpy are imported when a function runs, never at import time (the pytest plugin imports no PIL).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

# Matplotlib's inferno at 0.2 steps (its start moved from #000004 to black), in sRGB.
_ANCHORS = ((0, 0, 0), (66, 10, 104), (147, 38, 103), (221, 81, 58), (252, 165, 10), (252, 255, 164))
# The OKLab lightness of the smallest difference's colour: index 0 (no change) is black, and every change, however
# small against the largest, is at least this dark purple, never black.
_FIRST_CHANGE_LIGHTNESS = 0.2
RAMP_NAME = "inferno"
RAMP_SIZE = 256


class SizeMismatch(ValueError):
    """The two images are not the same size, so no pixel has a counterpart."""

    def __init__(self, size_a: tuple[int, int], size_b: tuple[int, int]) -> None:
        self.size_a, self.size_b = size_a, size_b
        super().__init__(
            f"the images differ in size ({size_a[0]}x{size_a[1]} and {size_b[0]}x{size_b[1]}): no per-pixel difference"
        )


@dataclass(frozen=True)
class DiffStats:
    """A pair's per-pixel differences (the largest channel difference of each pixel, 0-255), at full size."""

    width: int
    height: int
    max_abs: int  # the largest difference, 0-255
    mean_abs: float  # the mean difference over all pixels, 0-255
    changed: int  # pixels whose difference is not 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def changed_share(self) -> float:
        """The share of pixels that changed, 0-1."""
        return self.changed / self.pixels if self.pixels else 0.0

    @property
    def identical(self) -> bool:
        return self.changed == 0

    @property
    def scale(self) -> int:
        """The difference the heatmap draws at full scale: the largest one (1 for identical images)."""
        return max(self.max_abs, 1)

    def describe(self) -> str:
        """One line for a page: the numbers and what the heatmap's colours stand for."""
        if self.identical:
            return f"identical pixels ({self.width}x{self.height})"
        return (
            f"max difference {self.max_abs}, mean {self.mean_abs:.2f} (0-255 per channel); "
            f"{100 * self.changed_share:.2f}% of pixels changed ({self.changed:,} of {self.pixels:,}); "
            f"colour scale: black 0 to pale yellow {self.scale}"
        )


def difference_stats(a: Image, b: Image) -> DiffStats:
    """The statistics alone; SizeMismatch when the sizes differ."""
    return _stats(_difference(a, b))


def difference_heatmap(a: Image, b: Image, fit: int | None = None) -> tuple[Image, DiffStats]:
    """The heatmap of b against a (RGB, a's size) and the full-size statistics; SizeMismatch when sizes differ.

    ``fit``: the heatmap's longest side at most this many pixels, shrunk by an integer factor keeping each
    block's largest difference (so a one-pixel change stays visible in a thumbnail). The stats are always
    of the full-size images.
    """
    indices, stats = _heatmap_indices(a, b, fit)
    return _paletted(indices).convert("RGB"), stats


def heatmap_png(a: Image, b: Image, fit: int | None = None) -> bytes:
    """``difference_heatmap``'s image as PNG bytes (paletted: the ramp's 256 colours, exact and small), e.g. to
    serve; SizeMismatch (a ValueError) when the sizes differ."""
    return heatmap_png_with_stats(a, b, fit)[0]


def heatmap_png_with_stats(a: Image, b: Image, fit: int | None = None) -> tuple[bytes, DiffStats]:
    """``heatmap_png`` and the full-size statistics, from one pass over the pixels."""
    indices, stats = _heatmap_indices(a, b, fit)
    buffer = io.BytesIO()
    _paletted(indices).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), stats


def ramp_colours() -> list[tuple[int, int, int]]:
    """The heatmap's 256 colours, from difference 0 (black) to full scale, in sRGB."""
    return [tuple(int(c) for c in row) for row in _ramp()]  # type: ignore[misc]


def ramp_css_gradient(stops: int = 17) -> str:
    """The ramp as a CSS ``linear-gradient`` (left: 0, right: full scale), for a legend next to heatmaps."""
    colours = _ramp()
    parts = []
    for step in range(stops):
        index = round(step * (RAMP_SIZE - 1) / (stops - 1))
        r, g, b = (int(c) for c in colours[index])
        parts.append(f"rgb({r}, {g}, {b}) {100 * step / (stops - 1):g}%")
    return "linear-gradient(to right, " + ", ".join(parts) + ")"


# ---------------------------------------------------------------------------------------------


def _difference(a: Image, b: Image) -> np.ndarray:
    """Each pixel's largest channel difference, uint8, shape (height, width)."""
    import numpy as np

    if a.size != b.size:
        raise SizeMismatch(a.size, b.size)
    pixels_a = np.asarray(a.convert("RGB") if a.mode != "RGB" else a, dtype=np.int16)
    pixels_b = np.asarray(b.convert("RGB") if b.mode != "RGB" else b, dtype=np.int16)
    return np.abs(pixels_a - pixels_b).max(axis=2).astype(np.uint8)


def _stats(difference: np.ndarray) -> DiffStats:
    height, width = difference.shape
    return DiffStats(
        width=width,
        height=height,
        max_abs=int(difference.max()) if difference.size else 0,
        mean_abs=float(difference.mean()) if difference.size else 0.0,
        changed=int((difference > 0).sum()),
    )


def _heatmap_indices(a: Image, b: Image, fit: int | None) -> tuple[np.ndarray, DiffStats]:
    """The ramp index of each (block of) pixel(s): 0 only where nothing changed, 255 at the largest change."""
    import numpy as np

    if fit is not None and fit < 1:
        raise ValueError(f"fit must be at least 1 pixel, got {fit}")
    difference = _difference(a, b)
    stats = _stats(difference)
    if fit is not None:
        difference = _block_max(difference, -(-max(difference.shape) // fit))
    scale = stats.scale
    # Rounded to the nearest index; a difference of 1 or more never rounds to 0, since scale <= 255.
    indices = (difference.astype(np.int32) * (RAMP_SIZE - 1) + scale // 2) // scale
    return indices.astype(np.uint8), stats


def _block_max(values: np.ndarray, factor: int) -> np.ndarray:
    """Shrunk by ``factor`` on each side, each block its largest value (the edges padded with 0)."""
    import numpy as np

    if factor <= 1:
        return values
    height, width = values.shape
    padded = np.zeros((-(-height // factor) * factor, -(-width // factor) * factor), dtype=values.dtype)
    padded[:height, :width] = values
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return blocks.max(axis=(1, 3))


def _paletted(indices: np.ndarray) -> Image:
    from PIL import Image

    height, width = indices.shape
    image = Image.frombytes("P", (width, height), indices.tobytes())
    image.putpalette(_ramp().tobytes())
    return image


@cache
def _ramp() -> np.ndarray:
    """256 sRGB colours: black, then through the anchors from a dark purple, interpolated in OKLab with
    lightness linear in the index."""
    import numpy as np

    anchors = _srgb_to_oklab(np.array(_ANCHORS, dtype=np.float64) / 255)
    lightness = anchors[:, 0]
    wanted = np.concatenate([[0.0], np.linspace(_FIRST_CHANGE_LIGHTNESS, lightness[-1], RAMP_SIZE - 1)])
    lab = np.stack([np.interp(wanted, lightness, anchors[:, channel]) for channel in range(3)], axis=1)
    lab[:, 0] = wanted
    rgb = np.clip(_oklab_to_srgb(lab), 0, 1)
    return np.round(rgb * 255).astype(np.uint8)


# Björn Ottosson's OKLab (2020): linear sRGB to cone responses, their cube roots to lightness and two opponents.
_LINEAR_TO_LMS = (
    (0.4122214708, 0.5363325363, 0.0514459929),
    (0.2119034982, 0.6806995451, 0.1073969566),
    (0.0883024619, 0.2817188376, 0.6299787005),
)
_LMS_TO_LAB = (
    (0.2104542553, 0.7936177850, -0.0040720468),
    (1.9779984951, -2.4285922050, 0.4505937099),
    (0.0259040371, 0.7827717662, -0.8086757660),
)
_LAB_TO_LMS = (
    (1.0, 0.3963377774, 0.2158037573),
    (1.0, -0.1055613458, -0.0638541728),
    (1.0, -0.0894841775, -1.2914855480),
)
_LMS_TO_LINEAR = (
    (4.0767416621, -3.3077115913, 0.2309699292),
    (-1.2684380046, 2.6097574011, -0.3413193965),
    (-0.0041960863, -0.7034186147, 1.7076147010),
)


def _srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0-1, shape (n, 3), to OKLab (lightness 0-1 first)."""
    import numpy as np

    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return np.cbrt(linear @ np.array(_LINEAR_TO_LMS).T) @ np.array(_LMS_TO_LAB).T


def _oklab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """OKLab, shape (n, 3), to sRGB in 0-1 (colours outside sRGB clipped to it)."""
    import numpy as np

    linear = np.clip(((lab @ np.array(_LAB_TO_LMS).T) ** 3) @ np.array(_LMS_TO_LINEAR).T, 0, 1)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
