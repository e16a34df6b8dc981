"""`--t2i-check`: validate every case file and prompt length in seconds, loading no model weights."""

from __future__ import annotations

from typing import Any

import pytest

from harness.prompt_length import truncation_notes, warn_truncated


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("t2i")
    group.addoption(
        "--t2i-check",
        action="store_true",
        default=False,
        help="validate the case files (keys, types, ImageNet names, prompt length when the tokenizer is cached) "
        "without loading any model or generating anything. Default: False",
    )


def load_cached_tokenizer(model: str) -> Any | None:
    """The pipeline's tokenizer if it is on disk already (never downloads); None otherwise."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(model, subfolder="tokenizer", local_files_only=True)
    except (OSError, ValueError):
        return None
    finally:
        transformers_logging.set_verbosity(verbosity)


class CheckMode:
    """Collection validates the files; this checks prompt lengths, then runs nothing."""

    def __init__(self, config: pytest.Config, model: str) -> None:
        self.config = config
        self.model = model
        self.cases = 0
        self.tokenizer_found = False

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from harness.collect import CaseItem

        tokenizer = load_cached_tokenizer(self.model)
        self.tokenizer_found = tokenizer is not None
        seen = set()
        for item in session.items:
            if isinstance(item, CaseItem) and item.case_key not in seen:
                seen.add(item.case_key)
                if tokenizer is not None:
                    warn_truncated(item.case, truncation_notes(tokenizer, item.case))
        self.cases = len(seen)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed:  # collection errors: let pytest report them as usual
            return False
        return True  # nothing runs in check mode

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        prompt_note = (
            "prompt lengths checked with the cached tokenizer"
            if self.tokenizer_found
            else f"prompt lengths not checked: the tokenizer of {self.model} is not cached locally"
        )
        terminalreporter.write_sep("-", f"t2i-check: {self.cases} cases validated; {prompt_note}; no model loaded")
