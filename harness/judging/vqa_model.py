"""A vision-language model's probability of "yes" to a question about an image (VQAScore, Soft-TIFA).

Each question goes through the processor's own chat template, as one user turn of the image and the question
followed by ``INSTRUCTION``, with the generation prompt added; the model's next-token distribution at the last
position is read once, and P(yes) is the probability mass of the yes tokens over that of the yes and no tokens
together (``ANSWERS``). Every (image, question) pair of a batch is one sequence of one forward (one per image
size, for processors that tile images: see ``tiled_edge``), padded on the left so that the last position is the
next token of every sequence.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.common.model_loading import MissingModelError, ModelInfo, hub_revision, load_pretrained

if TYPE_CHECKING:
    import torch
    from PIL import Image

# Appended to every question: without it a small model often starts a sentence ("The image shows..."), and
# the yes/no tokens then hold a sliver of the probability, so their ratio is noise. VQAScore's prompt ends with
# "Please answer yes or no." for the same reason.
INSTRUCTION = "Answer yes or no."
# The spellings whose first token counts as each answer: a chat template may end with or without a space
# ("Assistant:" in SmolVLM's, "ASSISTANT: " elsewhere), and models answer capitalised or not.
ANSWERS = {
    "yes": ("yes", "Yes", " yes", " Yes"),
    "no": ("no", "No", " no", " No"),
}
# Bump when the prompt, the answer tokens or the way they are combined change: cached rows are then recomputed.
PROMPT_FORMAT = "1"  # also covers tiled_edge: how images are sized for the model

ROLE = "vision-language model"


@dataclass(frozen=True)
class AnswerTokens:
    """The token ids whose probabilities are summed for each answer."""

    yes: tuple[int, ...]
    no: tuple[int, ...]


def answer_tokens(tokenizer: Any) -> AnswerTokens | None:
    """The first token of each spelling in ``ANSWERS``, deduplicated; None when yes and no cannot be told apart.

    A token that begins a yes spelling and a no spelling (a lone space, in a tokenizer that splits " yes" into
    " " and "yes") says nothing about the answer, so it counts for neither.
    """
    first: dict[str, set[int]] = {}
    for answer, spellings in ANSWERS.items():
        ids = set()
        for spelling in spellings:
            encoded = tokenizer.encode(spelling, add_special_tokens=False)
            if encoded:
                ids.add(int(encoded[0]))
        first[answer] = ids
    shared = first["yes"] & first["no"]
    yes, no = sorted(first["yes"] - shared), sorted(first["no"] - shared)
    if not yes or not no:
        return None
    return AnswerTokens(tuple(yes), tuple(no))


@dataclass
class VqaModel:
    """A vision-language model + processor. ``vqa_model.probabilities_yes(images, questions)`` -> [images, questions].

    Example::

        def test_owl_is_white(vqa_model, t2i_pipeline):
            image = t2i_pipeline("a white owl on a branch").images[0]
            yes = vqa_model.probabilities_yes([image], ["Is the owl white?", "Is there any text in the image?"])
            assert yes[0, 0] > 0.5 and yes[0, 1] < 0.5
    """

    model: Any
    processor: Any
    device: str
    info: ModelInfo
    tokens: AnswerTokens
    # Set by the plugin's own fixture only: what the score cache knows these answers by.
    cache_identity: dict[str, str] | None = None

    def probabilities_yes(self, images: Sequence[Image.Image], questions: Sequence[str]) -> torch.Tensor:
        """P(yes) of every question about every image: a [images, questions] float32 CPU tensor, in one forward."""
        pairs = [(image, question) for image in images for question in questions]
        p_yes, _ = self.answer(pairs)
        return p_yes.reshape(len(images), len(questions))

    def prompt(self, question: str) -> str:
        """The text the model reads for ``question`` (the image stands where the template puts it)."""
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": f"{question} {INSTRUCTION}"}],
            }
        ]
        return str(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def answer(self, pairs: Sequence[tuple[Image.Image, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(P(yes), the yes and no tokens' share of the next-token probability) per (image, question) pair.

        Both are float32 CPU tensors of one value per pair. A share far below 1 means the model was about to
        say something other than yes or no, and its P(yes) means little. One forward for all pairs whose images
        the processor prepares alike (see ``image_options``): each image's answers depend on it alone.
        """
        import torch

        p_yes, share = torch.zeros(len(pairs)), torch.zeros(len(pairs))
        groups: dict[int | None, list[int]] = {}
        for index, (image, _) in enumerate(pairs):
            groups.setdefault(tiled_edge(self.processor, image), []).append(index)
        for edge, indices in groups.items():
            p_yes[indices], share[indices] = self._answer([pairs[i] for i in indices], edge)
        return p_yes, share

    def _answer(self, pairs: Sequence[tuple[Image.Image, str]], edge: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        options = {} if edge is None else {"images_kwargs": {"size": {"longest_edge": edge}}}
        inputs = self.processor(
            text=[self.prompt(question) for _, question in pairs],
            images=[image.convert("RGB") for image, _ in pairs],
            return_tensors="pt",
            padding=True,
            **options,
        ).to(self.device, dtype=self.model.dtype)  # the dtype applies to floating tensors (pixels) only
        with torch.no_grad():
            logits = self.model(**inputs, **_forward_options(self.model)).logits[:, -1].float()
        log_probs = logits.log_softmax(dim=-1)
        yes = log_probs[:, list(self.tokens.yes)].logsumexp(dim=-1)
        no = log_probs[:, list(self.tokens.no)].logsumexp(dim=-1)
        # In log space: with confident logits, p_yes + p_no can underflow in float32 while their ratio is exact.
        p_yes = torch.sigmoid(yes - no)
        share = torch.stack([yes, no], dim=-1).logsumexp(dim=-1).exp()
        if not bool(torch.isfinite(p_yes).all()):
            # NaN logits (float16 overflow, most often) would otherwise compare as neither pass nor fail.
            raise ValueError(
                "the model's next-token probabilities are not numbers (NaN); in float16 a model can overflow: "
                "try --t2i-dtype=bfloat16 or float32"
            )
        return p_yes.cpu(), share.cpu()


def tiled_edge(processor: Any, image: Image.Image) -> int | None:
    """The longest edge a tiling image processor should resize ``image`` to, when not its own setting; else None.

    Idefics3's and SmolVLM's processors resize every image's longest edge to ``size.longest_edge`` (2048 for
    SmolVLM-256M), upscaling smaller ones, then cut it into tiles of ``max_image_size.longest_edge`` (512) plus
    the whole image: a 512-pixel image becomes 17 tiles and 1088 image tokens, 20 times the CPU time
    of one tile, for no detail the image holds. Here the longest edge is the image's own, rounded up to whole
    tiles and capped at the processor's: a 512-pixel image is one tile, a 1024-pixel one 2 x 2 tiles and the
    whole. Processors that do not tile this way are left as they are.
    """
    import math

    image_processor = getattr(processor, "image_processor", None)
    if not getattr(image_processor, "do_image_splitting", False):
        return None
    longest = _longest_edge(getattr(image_processor, "size", None))
    tile = _longest_edge(getattr(image_processor, "max_image_size", None))
    if longest is None or tile is None:
        return None
    edge = min(longest, tile * math.ceil(max(image.size) / tile))
    return None if edge == longest else edge


def _longest_edge(size: Any) -> int | None:
    """``size["longest_edge"]`` of an image processor's size setting (a dict or a SizeDict), if it has one."""
    try:
        edge = size["longest_edge"]
    except (KeyError, TypeError):
        return None
    return int(edge) if isinstance(edge, (int, float)) and edge > 0 else None


def _forward_options(model: Any) -> dict[str, Any]:
    """Only the last position's logits (the vocabulary is most of the memory otherwise), and no cache to keep."""
    options: dict[str, Any] = {"use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        options["logits_to_keep"] = 1
    return options


def load_vqa_model(
    ref: str, option: str, device: str, dtype: torch.dtype, offline_reason: str | None = None
) -> VqaModel:
    """An image-text-to-text model and its processor (AutoModelForImageTextToText, AutoProcessor), ready to answer.

    Anything that makes the model unusable (not there, not an image-text-to-text model, no chat template, no
    tokens for yes and no) is a MissingModelError: one paragraph naming ``option`` and the fix.
    """
    from pathlib import Path

    from harness.common.model_loading import missing_model_message

    if Path(ref).is_dir() and not (Path(ref) / "config.json").is_file():
        raise MissingModelError(missing_model_message(ROLE, ref, option, "", required="config.json"), model=ref)

    def load(hub: dict[str, Any]) -> tuple[Any, Any]:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(ref, **hub)
        try:
            model = AutoModelForImageTextToText.from_pretrained(ref, dtype=dtype, use_safetensors=True, **hub)
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise
            raise _unusable(
                ref,
                option,
                "it is not an image-text-to-text model (transformers' "
                "AutoModelForImageTextToText does not know its configuration)",
            ) from None
        return model, processor

    model, processor = load_pretrained(ROLE, ref, option, load, offline_reason)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or not getattr(processor, "chat_template", None):
        raise _unusable(ref, option, "its processor has no tokenizer with a chat template to put the questions in")
    tokens = answer_tokens(tokenizer)
    if tokens is None:
        raise _unusable(ref, option, "its tokenizer gives no token that tells 'yes' from 'no'")
    # The last position must be every sequence's next token: pad on the left.
    tokenizer.padding_side = "left"
    model.to(device).eval()
    return VqaModel(
        model=model,
        processor=processor,
        device=device,
        info=ModelInfo("vqa", ref, hub_revision(ref, "config.json")),
        tokens=tokens,
    )


def _unusable(ref: str, option: str, why: str) -> MissingModelError:
    return MissingModelError(
        f"The {ROLE} {ref!r} ({option}) cannot answer the vqa: questions: {why}. Point {option} at an "
        "instruction-tuned image-text-to-text model with a chat template, such as HuggingFaceTB/SmolVLM-256M-Instruct.",
        model=ref,
    )
