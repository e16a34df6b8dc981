"""The two judges: CLIP zero-shot label probabilities and ResNet-50 ImageNet probabilities.

Both compute exactly what the study notes compute, so a score here equals a score by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    # Identifies the image tower for the score cache; set by the plugin's own fixture only, so a
    # scorer built elsewhere is never mistaken for another one's cached embeddings.
    cache_judge: str | None = None

    def probabilities(self, images: Sequence[Image.Image], labels: Sequence[str]) -> torch.Tensor:
        """``logits_per_image.softmax(dim=1)`` of ``processor(text=labels, images=images, padding=True)``."""
        return self.probabilities_from(self.image_embeddings(images), self.text_embeddings(labels))

    def image_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalized image embeddings, one row per image (one forward for the whole list)."""
        import torch

        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            output = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
        return _normalized(output)

    def text_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """Normalized text embeddings, one row per label; labels padded among themselves, as CLIPModel does."""
        import torch

        tokens = self.processor(text=list(labels), return_tensors="pt", padding=True).to(self.device)
        with torch.no_grad():
            output = self.model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
        return _normalized(output)

    def probabilities_from(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """[images, labels] probabilities, computed in the order CLIPModel.forward computes them."""
        import torch

        with torch.no_grad():
            logits_per_text = torch.matmul(text_embeds, image_embeds.t()) * self.model.logit_scale.exp()
        return logits_per_text.t().float().softmax(dim=1).cpu()


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
    cache_judge: str | None = None  # as ClipScorer.cache_judge

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


def _normalized(output: Any) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projected embeddings.
    embeds = output if not hasattr(output, "pooler_output") else output.pooler_output
    # As CLIPModel.forward normalizes (x / sum(x**2) ** 0.5), so scores equal the full forward's.
    return embeds / embeds.pow(2).sum(dim=-1, keepdim=True).pow(0.5)
