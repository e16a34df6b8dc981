"""A judge from outside the harness: the image's mean brightness must lie in a range, and it must have contrast.

It is the proof that the public interface is enough: registered through the pytest_t2i_judges hook only
(load it with `-p t2i_brightness`, or list it in an entry point of your own package), with its own
session fixture, and nothing under harness/ knows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from harness.judging import Judge, Score, SectionReader, Table, TableRow, Verdict

# How many images the meter has measured in this process: the tests see the score cache spare it.
MEASURED: list[int] = []


@dataclass(frozen=True)
class BrightnessCheck:
    low: float
    high: float


class BrightnessMeter:
    """The judge's "model": mean luma and its standard deviation, on a 0-1 scale."""

    version = "1"

    def measure(self, images: Sequence[Any]) -> list[list[float]]:
        import numpy as np

        MEASURED.append(len(images))
        rows = []
        for image in images:
            luma = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
            rows.append([float(luma.mean()), float(luma.std())])
        return rows


class BrightnessJudge(Judge[BrightnessCheck, BrightnessMeter]):
    section = "brightness"
    title = "Brightness"
    fixture = "brightness_meter"
    keys = ("low", "high")

    def parse(self, section: SectionReader) -> BrightnessCheck | None:
        low = section.number("low", 0, 1, "such as 0.2")
        high = section.number("high", 0, 1, "such as 0.8")
        if low is None or high is None:
            for key, value in (("low", low), ("high", high)):
                if value is None and key not in section:
                    section.problem(section.line, f"missing 'brightness.{key}': a mean brightness between 0 and 1")
            return None
        if low > high:
            section.problem(section.value("high").line, f"'brightness.high' ({high}) is below 'brightness.low' ({low})")
            return None
        return BrightnessCheck(low, high)

    def cache_identity(self, model: BrightnessMeter) -> dict[str, str] | None:
        return {"judge": "mean luma", "version": model.version}

    def feature_length(self, model: BrightnessMeter) -> int | None:
        return 2

    def features(self, model: BrightnessMeter, images: Sequence[Any]) -> list[list[float]]:
        return model.measure(images)

    def verdict(self, model: BrightnessMeter, check: BrightnessCheck, row: Any) -> Verdict:
        mean, contrast = float(row[0]), float(row[1])
        passed = check.low <= mean <= check.high
        state = "within" if passed else "outside"
        return Verdict(
            title=self.title,
            passed=passed,
            scores=(
                Score("mean", mean, "Brightness mean", better="neither"),
                Score("contrast", contrast, "Brightness contrast", gated=True, what="contrast"),
            ),
            table=Table(
                (TableRow((f"{mean:.4f}", "mean"), ("intended",)), TableRow((f"{contrast:.4f}", "contrast"))),
                note=f"range: {check.low:g} to {check.high:g}",
            ),
            explanation=f"mean brightness {mean:.4f} is {state} [{check.low:g}, {check.high:g}]",
            details={"low": check.low, "high": check.high},
        )


@pytest.hookimpl
def pytest_t2i_judges(config: pytest.Config) -> list[Judge[Any, Any]]:
    return [BrightnessJudge()]


@pytest.fixture(scope="session")
def brightness_meter() -> BrightnessMeter:
    return BrightnessMeter()
