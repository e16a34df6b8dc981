"""The two judges: CLIP zero-shot label probabilities and ResNet-50 ImageNet probabilities.

Both compute exactly what the study notes compute, so a score here equals a score by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from harness.models import ModelInfo


@dataclass
class ClipScorer:
    """CLIP model + processor. ``scorer.probabilities(images, labels)`` -> tensor [images, labels].

    Example::

        def test_owl(clip_scorer, t2i_pipeline):
            image = t2i_pipeline("an owl").images[0]
            probs = clip_scorer.probabilities([image], ["an owl", "a hawk"])
            assert probs[0, 0] > probs[0, 1]
    """

    model: Any
    processor: Any
    device: str
    info: ModelInfo

    def probabilities(self, images: Sequence[Image.Image], labels: Sequence[str]) -> torch.Tensor:
        import torch

        inputs = self.processor(text=list(labels), images=list(images), return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        # Pixels in the model's dtype (fp16 on GPU); token ids stay integers.
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.no_grad():
            logits_per_image = self.model(**inputs).logits_per_image
        return logits_per_image.float().softmax(dim=1).cpu()

    def token_count(self, text: str) -> int:
        """Tokens the text encoder would see for ``text``, start and end tokens included."""
        return len(self.processor.tokenizer(text)["input_ids"])


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

    def probabilities(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        batch = torch.stack([self.transforms(image.convert("RGB")) for image in images]).to(self.device)
        batch = batch.to(next(self.model.parameters()).dtype)
        with torch.no_grad():
            return self.model(batch).float().softmax(dim=1).cpu()

    def top(self, probabilities: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable classes of one image's probabilities, as (name, probability)."""
        values, indices = probabilities.topk(k)
        return [(self.categories[int(i)], float(v)) for v, i in zip(values, indices)]
