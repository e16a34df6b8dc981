"""Verdicts of the CLIP and ResNet checks, and the short tables a failing item prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.cases import ClipCheck, ResnetCheck


@dataclass(frozen=True)
class ClipVerdict:
    labels: tuple[str, ...]  # intended label first
    probs: tuple[float, ...]
    expect: str
    min_prob: float | None
    passed: bool

    @property
    def winner(self) -> int:
        return max(range(len(self.probs)), key=self.probs.__getitem__)

    @property
    def margin(self) -> float:
        """Intended label's probability minus the best distractor's."""
        return self.probs[0] - max(self.probs[1:])

    def explain(self) -> str:
        expected_p = self.probs[0]
        if self.winner != 0:
            head = (
                f"CLIP picked {self.labels[self.winner]!r} ({self.probs[self.winner]:.4f}) "
                f"over the intended label ({expected_p:.4f})"
            )
        elif self.min_prob is not None and expected_p < self.min_prob:
            head = f"CLIP picked the intended label, but with {expected_p:.4f} < min_prob {self.min_prob}"
        else:
            head = f"CLIP picked the intended label ({expected_p:.4f})"
        rows = []
        for index, (label, prob) in enumerate(zip(self.labels, self.probs, strict=True)):
            marks = []
            if index == 0:
                marks.append("intended")
            if index == self.winner:
                marks.append("picked")
            rows.append(f"  {prob:8.4f}  {'/'.join(marks):16}  {label}")
        return "\n".join([head + ":", "      prob  mark              label", *rows])


@dataclass(frozen=True)
class ResnetVerdict:
    expect: tuple[str, ...]
    top_k: int
    top: tuple[tuple[str, float], ...]  # the five most probable classes
    expect_probs: tuple[float, ...]  # probability of each expected class
    passed: bool

    @property
    def best_expected_prob(self) -> float:
        return max(self.expect_probs)

    def explain(self) -> str:
        state = "sees" if self.passed else "does not see"
        head = f"ResNet-50 {state} {' / '.join(map(repr, self.expect))} in its top {self.top_k}"
        rows = [
            f"  {rank:>4}  {prob:8.4f}  {name}{'  <- expected' if name in self.expect else ''}"
            for rank, (name, prob) in enumerate(self.top, start=1)
        ]
        expected = ", ".join(f"{name} {prob:.4f}" for name, prob in zip(self.expect, self.expect_probs, strict=True))
        return "\n".join([head + ":", "  rank      prob  class", *rows, f"  expected: {expected}"])


def judge_clip(check: ClipCheck, probs: Sequence[float]) -> ClipVerdict:
    probs = tuple(float(p) for p in probs)
    best_distractor = max(probs[1:])
    passed = probs[0] > best_distractor and (check.min_prob is None or probs[0] >= check.min_prob)
    return ClipVerdict(check.labels, probs, check.expect, check.min_prob, passed)


def judge_resnet(check: ResnetCheck, probs: Sequence[float], categories: Sequence[str]) -> ResnetVerdict:
    import torch

    tensor = torch.as_tensor(probs)
    top_k = tensor.topk(max(check.top_k, 5))
    # As Python lists: indexing a tensor element by element costs microseconds each, 1000 per image.
    indices, values = top_k.indices.tolist(), top_k.values.tolist()
    ranked = {categories[i] for i in indices[: check.top_k]}
    passed = any(name in ranked for name in check.expect)
    top5 = tuple((categories[i], v) for v, i in zip(values[:5], indices[:5], strict=True))
    expect_probs = tuple(float(tensor[categories.index(name)]) for name in check.expect)
    return ResnetVerdict(check.expect, check.top_k, top5, expect_probs, passed)


class CaseCheckFailed(AssertionError):
    """A case whose image did not pass; the message is the table, shown without a traceback."""


def failure_message(
    clip: ClipVerdict | None,
    resnet: ResnetVerdict | None,
    fault: str | None = None,
    unscored: Sequence[str] = (),
) -> str:
    """The failing item's message: why it has no image, or each verdict's table and each check not computed."""
    if fault is not None:
        return f"image not scored: {fault}"
    parts = [v.explain() for v in (clip, resnet) if v is not None]
    parts += [f"not scored: {why}" for why in unscored]
    return "\n".join(parts)
