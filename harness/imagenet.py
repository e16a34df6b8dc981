"""ImageNet-1k class names, as torchvision names them."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    # Read from the weights' metadata (plain Python data): no download, no model.
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
