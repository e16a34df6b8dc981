"""harness.reports.image_diff on constructed images: exact statistics, the heatmap's pixels, its ramp."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from harness.reports.image_diff import (
    RAMP_SIZE,
    DiffStats,
    SizeMismatch,
    difference_heatmap,
    difference_stats,
    heatmap_png,
    heatmap_png_with_stats,
    ramp_colours,
    ramp_css_gradient,
)


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _pixels(image: Image.Image) -> list[tuple[int, ...]]:
    return [tuple(int(c) for c in p) for p in np.asarray(image.convert("RGB")).reshape(-1, 3)]


def test_identical_images_give_a_black_heatmap_and_zero_stats() -> None:
    a = _noise(7, 5)
    heatmap, stats = difference_heatmap(a, a.copy())
    assert stats == DiffStats(width=7, height=5, max_abs=0, mean_abs=0.0, changed=0)
    assert stats.identical and stats.changed_share == 0.0 and stats.scale == 1
    assert stats.describe() == "identical pixels (7x5)"
    assert heatmap.mode == "RGB" and heatmap.size == (7, 5)
    assert heatmap.getextrema() == ((0, 0), (0, 0), (0, 0))


def test_one_changed_pixel_gives_exact_stats_and_the_brightest_colour_there_only() -> None:
    a = Image.new("RGB", (4, 3), (10, 190, 30))
    b = a.copy()
    b.putpixel((1, 2), (12, 200, 25))  # channel differences 2, 10, 5: the pixel's difference is 10
    heatmap, stats = difference_heatmap(a, b)
    assert stats == DiffStats(width=4, height=3, max_abs=10, mean_abs=10 / 12, changed=1)
    assert stats.pixels == 12 and stats.changed_share == 1 / 12 and stats.scale == 10 and not stats.identical
    assert stats.describe() == (
        "max difference 10, mean 0.83 (0-255 per channel); 8.33% of pixels changed (1 of 12); "
        "colour scale: black 0 to pale yellow 10"
    )
    pixels = np.asarray(heatmap)
    assert tuple(pixels[2, 1]) == ramp_colours()[-1]  # full scale: the largest difference
    mask = np.ones((3, 4), dtype=bool)
    mask[2, 1] = False
    assert not pixels[mask].any()  # black everywhere else
    # The order of the images does not matter: the difference is absolute.
    assert difference_stats(b, a) == stats


def test_differences_are_amplified_to_full_scale_and_small_ones_are_never_black() -> None:
    a = Image.new("RGB", (3, 1), (100, 100, 100))
    b = Image.new("RGB", (3, 1))
    for x, pixel in enumerate([(100, 100, 100), (101, 100, 100), (100, 100, 200)]):
        b.putpixel((x, 0), pixel)  # differences 0, 1, 100
    heatmap, stats = difference_heatmap(a, b)
    assert (stats.max_abs, stats.changed, stats.mean_abs) == (100, 2, pytest.approx(101 / 3))
    ramp = ramp_colours()
    # 1 of 100 rounds to index 3 of 255; 100 is full scale.
    assert _pixels(heatmap) == [ramp[0], ramp[round(255 / 100)], ramp[255]]
    assert ramp[0] == (0, 0, 0) and ramp[round(255 / 100)] != (0, 0, 0)


def test_the_ramp_is_black_then_rises_evenly_in_lightness() -> None:
    from harness.reports.image_diff import _srgb_to_oklab

    ramp = ramp_colours()
    assert len(ramp) == RAMP_SIZE and ramp[0] == (0, 0, 0) and ramp[-1] == (252, 255, 164)  # inferno's end
    lightness = _srgb_to_oklab(np.array(ramp, dtype=np.float64) / 255)[:, 0]
    steps = np.diff(lightness[1:])
    assert (steps > 0).all()  # strictly brighter at every step: no two differences look alike
    assert steps.max() < 2.5 * (lightness[-1] - lightness[1]) / (RAMP_SIZE - 2)  # evenly, up to 8-bit rounding
    assert lightness[1] > 0.19  # the smallest change is a visible purple, not black
    gradient = ramp_css_gradient(stops=3)
    assert gradient == f"linear-gradient(to right, rgb(0, 0, 0) 0%, rgb{ramp[128]} 50%, rgb{ramp[255]} 100%)"


def test_a_thumbnail_heatmap_keeps_each_blocks_largest_difference() -> None:
    a = Image.new("RGB", (10, 6))
    b = a.copy()
    b.putpixel((9, 5), (0, 0, 40))  # in the last, partial block
    b.putpixel((0, 0), (20, 0, 0))
    heatmap, stats = difference_heatmap(a, b, fit=4)  # factor 3: 4 x 2 blocks
    assert heatmap.size == (4, 2)
    assert (stats.width, stats.height, stats.max_abs, stats.changed) == (10, 6, 40, 2)  # of the full size
    ramp = ramp_colours()
    assert heatmap.getpixel((3, 1)) == ramp[255] and heatmap.getpixel((0, 0)) == ramp[128]  # 20 of 40: 127.5
    assert sum(1 for p in _pixels(heatmap) if p != (0, 0, 0)) == 2
    assert difference_heatmap(a, b, fit=10)[0].size == (10, 6)  # already small enough
    with pytest.raises(ValueError, match="fit must be at least 1"):
        difference_heatmap(a, b, fit=0)


def test_heatmap_png_is_the_heatmap_as_a_paletted_png() -> None:
    a, b = _noise(32, 16, 1), _noise(32, 16, 2)
    data, stats = heatmap_png_with_stats(a, b)
    image, same = difference_heatmap(a, b)
    assert stats == same and data == heatmap_png(a, b) and data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "PNG" and decoded.mode == "P" and decoded.size == (32, 16)
        assert _pixels(decoded) == _pixels(image)
    expected = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max(axis=2)
    assert stats.max_abs == expected.max() and stats.mean_abs == pytest.approx(expected.mean())
    assert stats.changed == int((expected > 0).sum())


def test_other_modes_are_compared_as_rgb_and_other_sizes_are_refused() -> None:
    grey = Image.new("L", (2, 2), 50)
    assert difference_stats(grey, Image.new("RGB", (2, 2), (50, 50, 50))).identical
    with pytest.raises(SizeMismatch, match=r"differ in size \(2x2 and 3x2\): no per-pixel difference") as info:
        difference_heatmap(grey, Image.new("RGB", (3, 2)))
    assert (info.value.size_a, info.value.size_b) == ((2, 2), (3, 2))
    assert isinstance(info.value, ValueError)
