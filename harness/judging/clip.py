"""The CLIP judge: zero-shot, CLIP must rank the intended label above every distractor.

Computes exactly what the study notes compute (``logits_per_image.softmax(dim=1)`` of
``processor(text=labels, images=images, padding=True)``), so a score here equals a score by hand. The image
tower's normalized embedding is the cached row; the labels are applied per case, so editing them reruns
only the (cheap) text tower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from harness.cases.case_file import Problem, SectionReader, also_on, label_key
from harness.judging.judge import Judge, Score, Table, TableRow, Verdict

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from harness.cases.case_file import Case
    from harness.common.model_loading import ModelInfo

SECTION = "clip"
KEYS = ("expect", "distractors", "min_prob")
# Tokenizers without a real limit report a huge sentinel (int(1e30)) as model_max_length.
_NO_LIMIT = 100_000


@dataclass(frozen=True)
class ClipCheck:
    """CLIP must rank ``expect`` above every distractor (and reach ``min_prob`` if set)."""

    expect: str
    distractors: tuple[str, ...]
    min_prob: float | None = None
    # Where each label is written (intended first), for problems found after parsing (e.g. too long
    # for CLIP's text encoder); not part of the check's identity.
    label_lines: tuple[int, ...] = field(default=(), compare=False)

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.expect, *self.distractors)


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
    # Set by the plugin's own fixture only: what the score cache knows this image tower by.
    cache_identity: dict[str, str] | None = None
    _text: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)  # label set -> text embeddings

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

    def label_embeddings(self, labels: tuple[str, ...]) -> torch.Tensor:
        """text_embeddings(labels), computed once per label set for this model."""
        if labels not in self._text:
            self._text[labels] = self.text_embeddings(labels)
        return self._text[labels]

    def probabilities_from(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """[images, labels] probabilities, computed in the order CLIPModel.forward computes them."""
        import torch

        with torch.no_grad():
            logits_per_text = torch.matmul(text_embeds, image_embeds.t()) * self.model.logit_scale.exp()
        return logits_per_text.t().float().softmax(dim=1).cpu()


def _normalized(output: Any) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projected embeddings.
    embeds = output if not hasattr(output, "pooler_output") else output.pooler_output
    # As CLIPModel.forward normalizes (x / sum(x**2) ** 0.5), so scores equal the full forward's.
    return embeds / embeds.pow(2).sum(dim=-1, keepdim=True).pow(0.5)


# ---------------------------------------------------------------------------------------------
# The verdict.


def clip_verdict(
    labels: Sequence[str], probs: Sequence[float], passed: bool, min_prob: float | None = None, explain: bool = True
) -> Verdict:
    """The verdict for label probabilities (intended label first); also rebuilt from results.json."""
    labels, probs = tuple(labels), tuple(float(p) for p in probs)
    winner = max(range(len(probs)), key=probs.__getitem__)
    margin = probs[0] - max(probs[1:])
    rows = []
    for index, (label, prob) in enumerate(zip(labels, probs, strict=True)):
        marks = tuple(m for m, on in (("intended", index == 0), ("picked", index == winner)) if on)
        rows.append(TableRow((f"{prob:.4f}", " ".join(marks), label), marks))
    return Verdict(
        title="CLIP",
        passed=passed,
        scores=_scores(probs[0], margin),
        table=Table(tuple(rows)),
        explanation=_explain(labels, probs, winner, min_prob) if explain else "",
        details={
            "labels": list(labels),
            "probs": list(probs),
            "expect": labels[0],
            "min_prob": min_prob,
            "margin": margin,
            "passed": passed,
        },
        comparable=_comparable(labels),
        comparable_what="CLIP labels",
    )


def _scores(prob: float, margin: float) -> tuple[Score, ...]:
    """CLIP's two scores; both on a 0-1 scale, so the baseline tolerance applies to them."""
    return (
        Score("prob", prob, "CLIP probability", gated=True, what="intended-label probability"),
        Score("margin", margin, "CLIP margin", gated=True, what="margin"),
    )


def _comparable(labels: Sequence[str]) -> str:
    """Scores under other labels do not compare: the labels are the comparison's key."""
    return "\0".join(labels)


def _explain(labels: tuple[str, ...], probs: tuple[float, ...], winner: int, min_prob: float | None) -> str:
    expected_p = probs[0]
    if winner != 0:
        head = f"CLIP picked {labels[winner]!r} ({probs[winner]:.4f}) over the intended label ({expected_p:.4f})"
    elif min_prob is not None and expected_p < min_prob:
        head = f"CLIP picked the intended label, but with {expected_p:.4f} < min_prob {min_prob}"
    else:
        head = f"CLIP picked the intended label ({expected_p:.4f})"
    rows = []
    for index, (label, prob) in enumerate(zip(labels, probs, strict=True)):
        marks = [m for m, on in (("intended", index == 0), ("picked", index == winner)) if on]
        rows.append(f"  {prob:8.4f}  {'/'.join(marks):16}  {label}")
    return "\n".join([head + ":", "      prob  mark              label", *rows])


def verdict_for_probs(check: ClipCheck, probs: Sequence[float]) -> Verdict:
    probs = tuple(float(p) for p in probs)
    passed = probs[0] > max(probs[1:]) and (check.min_prob is None or probs[0] >= check.min_prob)
    return clip_verdict(check.labels, probs, passed, check.min_prob)


# ---------------------------------------------------------------------------------------------
# The judge.


class ClipJudge(Judge[ClipCheck, ClipScorer]):
    section = SECTION
    title = "CLIP"
    fixture = "clip_scorer"
    keys = KEYS
    # Not every case needs CLIP (a case of detector or VQA checks alone); a case with no check at all is refused.
    required = False
    missing_hint = (
        "add 'clip:' with 'expect' (the label CLIP should pick) and 'distractors' (labels it could confuse with it)"
    )

    def __init__(self) -> None:
        self._offline_tokenizer: Any = None  # check mode: looked up once per session

    def parse(self, section: SectionReader) -> ClipCheck | None:
        expect = section.value("expect")
        if expect.raw is None:
            section.problem(expect.line, "missing 'clip.expect': the label CLIP should pick, e.g. expect: \"an owl\"")
        else:
            section.text("expect", required=True)
        distractors = section.labels(
            "distractors", 'label CLIP could confuse with the intended one, e.g. distractors: ["a hawk"]'
        )
        if distractors is not None:
            seen: dict[str, int] = {}
            intended = label_key(expect.raw) if isinstance(expect.raw, str) else None
            for label, line in distractors:
                key = label_key(label)
                if key == intended:
                    section.problem(
                        line,
                        f"the intended label {expect.raw!r} (clip.expect, line {expect.line}) is repeated among the "
                        "distractors; CLIP ignores case and spacing, so remove it or reword it",
                    )
                elif key in seen:
                    section.problem(
                        line,
                        f"duplicate label {label!r} in 'clip.distractors'{also_on(seen[key], line)}; "
                        "CLIP ignores case and spacing, so remove one",
                    )
                else:
                    seen[key] = line
        min_prob = section.number("min_prob", 0, 1, "such as 0.5", what="a probability")
        if min_prob is None and "min_prob" in section:
            return None  # its problem is reported
        if distractors is None or not isinstance(expect.raw, str):
            return None
        return ClipCheck(
            expect=expect.raw,
            distractors=tuple(label for label, _ in distractors),
            min_prob=min_prob,
            label_lines=(expect.line, *(line for _, line in distractors)),
        )

    def problems(self, check: ClipCheck, case: Case, model: ClipScorer) -> list[Problem]:
        tokenizer = getattr(getattr(model, "processor", None), "tokenizer", None)
        return overlong_label_problems(tokenizer, check, case) if tokenizer is not None else []

    def problems_without_model(self, check: ClipCheck, case: Case, config: Any) -> list[Problem]:
        from harness.common.local_tokenizer import LocalTokenizer, load_local_tokenizer
        from harness.pytest_plugin.options import model_ref

        if self._offline_tokenizer is None:
            self._offline_tokenizer = load_local_tokenizer(model_ref(config, "t2i_clip_model"), None)
        if not isinstance(self._offline_tokenizer, LocalTokenizer):
            return []
        return overlong_label_problems(self._offline_tokenizer, check, case)

    def check_mode_note(self) -> str | None:
        from harness.common.local_tokenizer import LocalTokenizer, TokenizerNotFound

        found = self._offline_tokenizer
        if isinstance(found, LocalTokenizer):
            return f"CLIP label lengths checked with the tokenizer in {found.source}"
        if isinstance(found, TokenizerNotFound):
            return f"CLIP label lengths not checked: {found.reason}"
        return "no CLIP label to check"

    def cache_identity(self, model: ClipScorer) -> dict[str, str] | None:
        return model.cache_identity

    def feature_length(self, model: ClipScorer) -> int | None:
        return getattr(getattr(model.model, "config", None), "projection_dim", None)

    def features(self, model: ClipScorer, images: Sequence[Image.Image]) -> torch.Tensor:
        return model.image_embeddings(images)

    def verdict(self, model: ClipScorer, check: ClipCheck, row: np.ndarray) -> Verdict:
        import torch

        # Rows are float32 on the CPU (as the score cache keeps them); the round trip is exact for fp16 and bf16.
        image_embeds = torch.from_numpy(row).unsqueeze(0).to(model.device, model.model.dtype)
        probs = model.probabilities_from(image_embeds, model.label_embeddings(check.labels))
        return verdict_for_probs(check, probs[0].tolist())


def overlong_label_problems(tokenizer: Any, check: ClipCheck, case: Case) -> list[Problem]:
    """One problem per label that has more tokens than ``tokenizer``'s model reads.

    Unlike a prompt (silently truncated), CLIP cannot encode such a label at all, so it is a problem of the
    case file, reported with the label's line.
    """
    from harness.generation.prompt_length import token_count

    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if not 0 < limit <= _NO_LIMIT:
        return []
    problems = []
    lines = check.label_lines or (case.line,) * len(check.labels)
    for index, (label, line) in enumerate(zip(check.labels, lines, strict=True)):
        count = token_count(tokenizer, label)
        if count > limit:
            where = "clip.expect" if index == 0 else f"clip.distractors item {index}"
            problems.append(
                Problem(
                    line,
                    f"{where} has {count} tokens, but CLIP's text encoder reads at most {limit} (start and end "
                    "tokens included), so CLIP cannot score it: shorten the label",
                    case.id,
                )
            )
    return problems


# ---------------------------------------------------------------------------------------------
# The model, as a session fixture.


def clip_identity(settings: Any, model: Any, info: ModelInfo) -> dict[str, str] | None:
    """CLIP's image tower: weights and preprocessor config (a hub commit, or a local dir's content)."""
    from harness.judging.score_cache import pretrained_identity

    return pretrained_identity("clip image embedding", settings.clip_model, info.revision, model.dtype, settings.device)


@pytest.fixture(scope="session")
def clip_scorer(pytestconfig: pytest.Config, t2i_settings: Any) -> ClipScorer:
    """CLIP (--t2i-clip-model): ``clip_scorer.probabilities(images, labels)`` -> [images, labels]."""
    from harness.pytest_plugin.availability import offline_reason_for
    from harness.pytest_plugin.session_state import note_model

    scorer = build_clip_scorer(t2i_settings, offline_reason_for(pytestconfig, t2i_settings.clip_model))
    note_model(pytestconfig, scorer.info)
    return scorer


def build_clip_scorer(settings: Any, offline_reason: str | None) -> ClipScorer:
    """CLIP as the session fixture builds it (and a Ray actor, on its own node)."""
    from harness.common import model_loading

    model, processor, info = model_loading.load_clip(settings, offline_reason)
    return ClipScorer(
        model=model,
        processor=processor,
        device=settings.device,
        info=info,
        cache_identity=clip_identity(settings, model, info),
    )


# ---------------------------------------------------------------------------------------------
# Read back: results.json's `clip` section and a baseline's `clip` entry keep their original formats.


def verdict_from_record(fields: Any) -> Verdict:
    """The verdict of a results.json `clip` section (harness.common.json_input.Fields), checked field by field."""
    from harness.common.json_input import ShapeError, boolean, list_of, number, optional, text

    labels = fields.get("labels", list_of(text(), min_length=2))
    probs = fields.get("probs", list_of(number(), min_length=2))
    if len(probs) != len(labels):
        raise ShapeError(fields.field("probs"), f"{len(labels)} numbers, one per label", fields.data["probs"])
    fields.get("expect", optional(text()), None)
    min_prob = fields.get("min_prob", optional(number()), None)
    fields.get("margin", optional(number()), None)
    return clip_verdict(labels, probs, fields.get("passed", boolean()), min_prob, explain=False)


def baseline_entry(verdict: Verdict, digits: int) -> dict[str, Any]:
    prob, margin = verdict.score("prob"), verdict.score("margin")
    assert prob is not None and margin is not None
    return {
        "labels": (verdict.comparable or "").split("\0"),
        "prob": round(prob.value, digits),
        "margin": round(margin.value, digits),
        "passed": verdict.passed,
    }


def verdict_from_baseline(fields: Any) -> Verdict:
    from harness.common.json_input import boolean, list_of, number, text

    labels = fields.get("labels", list_of(text(), min_length=2))
    prob, margin, passed = fields.get("prob", number()), fields.get("margin", number()), fields.get("passed", boolean())
    return Verdict(
        title="CLIP",
        passed=passed,
        scores=_scores(prob, margin),
        table=Table(
            (
                TableRow((f"{prob:.4f}", "intended", labels[0]), ("intended",)),
                TableRow((f"{margin:+.4f}", "margin", "")),
                TableRow(("pass" if passed else "fail", "verdict", "")),
            )
        ),
        comparable=_comparable(labels),
        comparable_what="CLIP labels",
    )
