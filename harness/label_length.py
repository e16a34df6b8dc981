"""CLIP labels longer than CLIP's text encoder reads: unlike a prompt (silently truncated), CLIP cannot
encode such a label at all, so it is a problem of the case file, reported with the label's line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.cases import Problem
from harness.prompt_length import token_count

if TYPE_CHECKING:
    from harness.cases import Case

# Tokenizers without a real limit report a huge sentinel (int(1e30)) as model_max_length.
_NO_LIMIT = 100_000


def overlong_label_problems(tokenizer: Any, case: Case) -> list[Problem]:
    """One problem per label of ``case`` that has more tokens than ``tokenizer``'s model reads."""
    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if not 0 < limit <= _NO_LIMIT:
        return []
    problems = []
    lines = case.clip.label_lines or (case.line,) * len(case.clip.labels)
    for index, (label, line) in enumerate(zip(case.clip.labels, lines, strict=True)):
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
