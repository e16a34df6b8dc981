"""ImageNet-1k class names, as torchvision names them, shipped with the package.

Reading them from torchvision's weights metadata would import torch and torchvision (seconds, and
hundreds of MB) just to validate case files; tests/test_imagenet_names.py proves the copy equals
``ResNet50_Weights.IMAGENET1K_V2.meta["categories"]``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

CATEGORIES_FILE = "imagenet_categories.json"
# torchvision's ResNet50_Weights members and its DEFAULT alias (the same since torchvision 0.13), so that
# a mistyped --t2i-resnet-weights is refused at start-up without importing torch;
# tests/test_imagenet_names.py proves the list equals the installed torchvision's.
RESNET50_WEIGHTS_NAMES = ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT")


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    text = files("harness.judging").joinpath(CATEGORIES_FILE).read_text(encoding="utf-8")
    return tuple(json.loads(text))
