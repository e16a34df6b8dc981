"""The built-in judges, CLIP and ResNet-50, registered through the same hook as any other judge.

This module is the pytest plugin that registers them (an entry point of the package) and provides their
model fixtures, `clip_scorer` and `imagenet_classifier`.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.judging.clip import ClipJudge, clip_scorer
from harness.judging.judge import Judge
from harness.judging.resnet import ResnetJudge, imagenet_classifier

__all__ = ["builtin_judges", "clip_scorer", "imagenet_classifier", "pytest_t2i_judges"]

BUILTIN_SECTIONS = ("clip", "resnet")


def builtin_judges() -> list[Judge[Any, Any]]:
    return [ClipJudge(), ResnetJudge()]


@pytest.hookimpl
def pytest_t2i_judges(config: pytest.Config) -> list[Judge[Any, Any]]:
    return builtin_judges()
