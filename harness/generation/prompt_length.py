"""Prompts longer than the text encoder's window: the model silently drops the rest, so say so."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.cases.case_file import Case


class PromptTruncatedWarning(UserWarning):
    """A prompt or negative prompt has more tokens than the text encoder reads."""

    line: int = 0


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens the text encoder would need for ``text``, start and end tokens included.

    ``tokenizer`` is a LocalTokenizer read from disk (check mode, and runs that never load the pipeline)
    or a loaded pipeline's transformers tokenizer; the two count alike (tests/test_local_tokenizer.py).
    """
    from tokenizers import Tokenizer

    from harness.common.local_tokenizer import LocalTokenizer

    backend = tokenizer.backend if isinstance(tokenizer, LocalTokenizer) else tokenizer
    if isinstance(backend, Tokenizer):  # its post-processor adds the start and end tokens
        return len(backend.encode(text).ids)
    import logging

    # Counting a long text makes transformers log its own "longer than max length" note.
    logger = logging.getLogger("transformers.tokenization_utils_base")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return len(backend(text, truncation=False)["input_ids"])
    finally:
        logger.setLevel(previous)


def truncation_notes(tokenizer: Any, case: Case) -> list[str]:
    """One note per text of the case that the tokenizer would truncate."""
    limit = int(getattr(tokenizer, "model_max_length", 77))
    if limit > 100_000:  # tokenizers without a real limit report a huge sentinel
        return []
    notes = []
    for key, text in (("prompt", case.prompt), ("negative_prompt", case.negative_prompt)):
        if text:
            count = token_count(tokenizer, text)
            if count > limit:
                notes.append(
                    f"{key} has {count} tokens but the text encoder reads only {limit}; "
                    f"the model silently ignores everything after token {limit}: shorten it"
                )
    return notes


def warn_truncated(case: Case, notes: list[str]) -> None:
    for note in notes:
        warning = PromptTruncatedWarning(f"case {case.id!r}: {note}")
        warning.line = case.line  # for the message when `-W error` raises it
        # Point the warning at the case in its file, not at harness code.
        warnings.warn_explicit(warning, PromptTruncatedWarning, filename=str(case.path), lineno=case.line)
