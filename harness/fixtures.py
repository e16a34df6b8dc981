"""Session fixtures holding the models: loaded lazily, once per session, overridable in conftest.py."""

from __future__ import annotations

from typing import Any

import pytest

from harness.models import ModelInfo, load_clip, load_pipeline, load_resnet
from harness.options import Settings
from harness.scoring import ClipScorer, ImagenetClassifier
from harness.state import get_state


def _note(config: pytest.Config, info: ModelInfo) -> None:
    get_state(config).environment[f"t2i {info.role}"] = f"{info.ref} @ {info.revision}"


@pytest.fixture(scope="session")
def t2i_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved --t2i-* options: model refs, device, dtype, report dir."""
    return get_state(pytestconfig).settings


@pytest.fixture(scope="session")
def t2i_pipeline(pytestconfig: pytest.Config, t2i_settings: Settings) -> Any:
    """The diffusers text-to-image pipeline (--t2i-model), on the chosen device and dtype.

    Example::

        def test_lighthouse(t2i_pipeline):
            image = t2i_pipeline("a lighthouse at dusk", num_inference_steps=25).images[0]
            assert image.size == (512, 512)
    """
    pipeline, info = load_pipeline(t2i_settings)
    _note(pytestconfig, info)
    return pipeline


@pytest.fixture(scope="session")
def clip_scorer(pytestconfig: pytest.Config, t2i_settings: Settings) -> ClipScorer:
    """CLIP (--t2i-clip-model): ``clip_scorer.probabilities(images, labels)`` -> [images, labels]."""
    model, processor, info = load_clip(t2i_settings)
    _note(pytestconfig, info)
    return ClipScorer(model=model, processor=processor, device=t2i_settings.device, info=info)


@pytest.fixture(scope="session")
def imagenet_classifier(pytestconfig: pytest.Config, t2i_settings: Settings) -> ImagenetClassifier:
    """torchvision ResNet-50 (--t2i-resnet-weights): ``probabilities(images)`` -> [images, 1000]."""
    model, transforms, categories, info = load_resnet(t2i_settings)
    _note(pytestconfig, info)
    return ImagenetClassifier(
        model=model, transforms=transforms, categories=categories, device=t2i_settings.device, info=info
    )
