"""`--t2i-check`: validate every case file and prompt length in seconds, loading no model weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from harness.prompt_length import truncation_notes, warn_truncated

if TYPE_CHECKING:
    from harness.cases import Case

PLUGIN_NAME = "t2i-check"


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
        self._tokenizer: Any = None
        self._tokenizer_looked_up = False

    @property
    def tokenizer_found(self) -> bool:
        return self._tokenizer is not None

    def check_prompts(self, case: Case) -> None:
        """Warn about texts the encoder truncates; called while the case's file is collected.

        Collection is where pytest turns warnings into errors under `-W error`, and then the file
        becomes a collection error that names the case, as for any other problem in it.
        """
        self.cases += 1
        if not self._tokenizer_looked_up:
            self._tokenizer_looked_up = True
            self._tokenizer = load_cached_tokenizer(self.model)
        if self._tokenizer is not None:
            warn_truncated(case, truncation_notes(self._tokenizer, case))

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
