"""The ResNet-50 judge: torchvision's ImageNet classifier must see one of the expected classes in its top k.

ResNet-50 sees objects, not styles (a watercolor fox is "red fox" or "kit fox"). Its 1000 class
probabilities are the cached row, so editing `expect` or `top_k` reruns nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.cases.case_file import SectionReader, also_on, suggest
from harness.judging.imagenet import imagenet_categories
from harness.judging.judge import Judge, Score, Table, TableRow, Verdict

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from harness.common.model_loading import ModelInfo

SECTION = "resnet"
KEYS = ("expect", "top_k")
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ResnetCheck:
    """ResNet-50 must put one of ``expect`` (ImageNet class names) in its top ``top_k``."""

    expect: tuple[str, ...]
    top_k: int = 1


@dataclass
class ImagenetClassifier:
    """torchvision ResNet-50 with its weights' own preprocessing and class names.

    Example::

        def test_fox(imagenet_classifier):
            top = imagenet_classifier.top(imagenet_classifier.probabilities([image])[0], k=5)
            assert top[0][0] in {"red fox", "kit fox"}
    """

    model: Any
    transforms: Any
    categories: tuple[str, ...]
    device: str
    info: ModelInfo
    cache_identity: dict[str, str] | None = None  # as ClipScorer.cache_identity

    def probabilities(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        batch = torch.stack([self.transforms(image.convert("RGB")) for image in images]).to(self.device)
        batch = batch.to(next(self.model.parameters()).dtype)
        with torch.no_grad():
            return self.model(batch).float().softmax(dim=1).cpu()

    def top(self, probabilities: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable classes of one image's probabilities, as (name, probability)."""
        values, indices = probabilities.topk(k)
        return [(self.categories[int(i)], float(v)) for v, i in zip(values, indices, strict=True)]


def resnet_verdict(
    expect: Sequence[str],
    expect_probs: Sequence[float],
    top_k: int,
    top: Sequence[tuple[str, float]],
    passed: bool,
    explain: bool = True,
) -> Verdict:
    """The verdict for ResNet's answer; also rebuilt from results.json."""
    expect, expect_probs, top = tuple(expect), tuple(float(p) for p in expect_probs), tuple(top)
    best = max(range(len(expect)), key=expect_probs.__getitem__)
    expected = set(expect)
    return Verdict(
        title="ResNet",
        passed=passed,
        scores=(Score("prob", expect_probs[best], f"ResNet {expect[best]}", what="best expected-class probability"),),
        table=Table(
            tuple(TableRow((f"{prob:.4f}", name), ("intended",) if name in expected else ()) for name, prob in top),
            note=f"expected (top {top_k}): {', '.join(expect)}",
        ),
        explanation=_explain(expect, expect_probs, top_k, top, passed) if explain else "",
        details={
            "expect": list(expect),
            "expect_probs": list(expect_probs),
            "top_k": top_k,
            "top": [[name, prob] for name, prob in top],
            "passed": passed,
        },
    )


def _explain(
    expect: tuple[str, ...],
    expect_probs: tuple[float, ...],
    top_k: int,
    top: tuple[tuple[str, float], ...],
    passed: bool,
) -> str:
    state = "sees" if passed else "does not see"
    head = f"ResNet-50 {state} {' / '.join(map(repr, expect))} in its top {top_k}"
    rows = [
        f"  {rank:>4}  {prob:8.4f}  {name}{'  <- expected' if name in expect else ''}"
        for rank, (name, prob) in enumerate(top, start=1)
    ]
    expected = ", ".join(f"{name} {prob:.4f}" for name, prob in zip(expect, expect_probs, strict=True))
    return "\n".join([head + ":", "  rank      prob  class", *rows, f"  expected: {expected}"])


def verdict_for_probs(check: ResnetCheck, probs: Sequence[float], categories: Sequence[str]) -> Verdict:
    import torch

    tensor = torch.as_tensor(probs)
    top_k = tensor.topk(max(check.top_k, 5))
    # As Python lists: indexing a tensor element by element costs microseconds each, 1000 per image.
    indices, values = top_k.indices.tolist(), top_k.values.tolist()
    ranked = {categories[i] for i in indices[: check.top_k]}
    passed = any(name in ranked for name in check.expect)
    top5 = tuple((categories[i], v) for v, i in zip(values[:5], indices[:5], strict=True))
    expect_probs = tuple(float(tensor[categories.index(name)]) for name in check.expect)
    return resnet_verdict(check.expect, expect_probs, check.top_k, top5, passed)


class ResnetJudge(Judge[ResnetCheck, ImagenetClassifier]):
    section = SECTION
    title = "ResNet-50"
    column = "ResNet top 5"
    fixture = "imagenet_classifier"
    keys = KEYS

    def parse(self, section: SectionReader) -> ResnetCheck | None:
        expect = section.labels("expect", 'ImageNet class name, e.g. expect: ["great grey owl"]')
        if expect is not None:
            categories = imagenet_categories()
            known = set(categories)
            seen: dict[str, int] = {}
            for name, line in expect:
                if name not in known:
                    hint = (
                        suggest(name, categories)
                        or " (see torchvision's ResNet50_Weights.IMAGENET1K_V2.meta['categories'])"
                    )
                    section.problem(line, f"{name!r} is not an ImageNet class name{hint}")
                elif name in seen:
                    section.problem(line, f"{name!r} is listed twice in 'resnet.expect'{also_on(seen[name], line)}")
                else:
                    seen[name] = line
        top_k = section.integer("top_k", 1, IMAGENET_CLASSES, "1 to 5 is usual", default=1)
        if expect is None or top_k is None:
            return None
        return ResnetCheck(expect=tuple(name for name, _ in expect), top_k=top_k)

    def cache_identity(self, model: ImagenetClassifier) -> dict[str, str] | None:
        return model.cache_identity

    def feature_length(self, model: ImagenetClassifier) -> int | None:
        return len(model.categories)

    def features(self, model: ImagenetClassifier, images: Sequence[Image.Image]) -> torch.Tensor:
        return model.probabilities(images)

    def verdict(self, model: ImagenetClassifier, check: ResnetCheck, row: np.ndarray) -> Verdict:
        return verdict_for_probs(check, row.tolist(), model.categories)


# ---------------------------------------------------------------------------------------------
# The model, as a session fixture.


def resnet_identity(settings: Any, model: Any, transforms: Any, info: ModelInfo) -> dict[str, str]:
    """ResNet-50: its weights (a torchvision weights file, or the user's file by content) and preprocessing."""
    from harness.common.versions import package_version
    from harness.generation.fingerprint import file_digest

    weights = settings.resnet_weights
    if Path(weights).is_file():
        weights = f"sha256:{file_digest(Path(weights))}"
    return {
        "judge": "resnet50 imagenet probabilities",
        "weights": weights,
        "weights_file": info.revision,
        "preprocessing": repr(transforms),
        "dtype": str(next(model.parameters()).dtype),
        "device": settings.device.split(":")[0],
        "torchvision": package_version("torchvision"),
        "torch": package_version("torch"),
    }


@pytest.fixture(scope="session")
def imagenet_classifier(pytestconfig: pytest.Config, t2i_settings: Any) -> ImagenetClassifier:
    """torchvision ResNet-50 (--t2i-resnet-weights): ``probabilities(images)`` -> [images, 1000]."""
    from harness.pytest_plugin.session_state import note_model

    classifier = build_imagenet_classifier(t2i_settings)
    note_model(pytestconfig, classifier.info)
    return classifier


def build_imagenet_classifier(settings: Any) -> ImagenetClassifier:
    """ResNet-50 as the session fixture builds it (and a Ray actor, on its own node)."""
    from harness.common import model_loading

    model, transforms, categories, info = model_loading.load_resnet(settings)
    return ImagenetClassifier(
        model=model,
        transforms=transforms,
        categories=categories,
        device=settings.device,
        info=info,
        cache_identity=resnet_identity(settings, model, transforms, info),
    )


# ---------------------------------------------------------------------------------------------
# Read back: results.json's `resnet` section and a baseline's `resnet` entry keep their original formats.


def _class_and_prob(value: Any, where: str) -> tuple[str, float]:
    from harness.common.json_input import ShapeError, number, text

    if not (isinstance(value, list) and len(value) == 2):
        raise ShapeError(where, "a [class name, probability] pair", value)
    return text()(value[0], f"{where}[0]"), number()(value[1], f"{where}[1]")


_class_and_prob.expected = "a [class name, probability] pair"  # type: ignore[attr-defined]


def verdict_from_record(fields: Any) -> Verdict:
    from harness.common.json_input import ShapeError, boolean, list_of, number, text, whole

    expect = fields.get("expect", list_of(text(), min_length=1))
    expect_probs = fields.get("expect_probs", list_of(number(), min_length=1))
    if len(expect_probs) != len(expect):
        raise ShapeError(
            fields.field("expect_probs"), f"{len(expect)} numbers, one per expected class", fields.data["expect_probs"]
        )
    return resnet_verdict(
        expect,
        expect_probs,
        fields.get("top_k", whole(1, IMAGENET_CLASSES)),
        fields.get("top", list_of(_class_and_prob)),
        fields.get("passed", boolean()),
        explain=False,
    )


def baseline_entry(verdict: Verdict, digits: int) -> dict[str, Any]:
    (score,) = verdict.scores
    return {"class": score.label.removeprefix("ResNet "), "prob": round(score.value, digits), "passed": verdict.passed}


def verdict_from_baseline(fields: Any) -> Verdict:
    from harness.common.json_input import boolean, number, text

    name, prob, passed = fields.get("class", text()), fields.get("prob", number()), fields.get("passed", boolean())
    return Verdict(
        title="ResNet",
        passed=passed,
        scores=(Score("prob", prob, f"ResNet {name}", what="best expected-class probability"),),
        table=Table(
            (TableRow((f"{prob:.4f}", name), ("intended",)), TableRow(("pass" if passed else "fail", "verdict")))
        ),
    )
