"""`--t2i-check`: validate every case file and prompt length in seconds, loading no model weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from harness.common.local_tokenizer import LocalTokenizer, TokenizerNotFound, load_local_tokenizer
from harness.generation.prompt_length import truncation_notes, warn_truncated

if TYPE_CHECKING:
    from harness.cases.case_file import Case, Problem
    from harness.judging.judge import Judge

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


def load_cached_tokenizer(model: str) -> LocalTokenizer | None:
    """The pipeline's tokenizer if it is on disk already (never downloads); None otherwise."""
    found = load_local_tokenizer(model, "tokenizer")
    return found if isinstance(found, LocalTokenizer) else None


class CheckMode:
    """Collection validates the files; this checks prompt lengths, then runs nothing."""

    def __init__(self, config: pytest.Config, model: str) -> None:
        self.config = config
        self.model = model
        self.cases = 0
        self._tokenizer: LocalTokenizer | TokenizerNotFound | None = None  # None: not looked up yet
        self._judges: dict[str, Judge[Any, Any]] = {}  # every judge that checked a case, by section

    def case_problems(self, case: Case, judges: dict[str, Judge[Any, Any]]) -> list[Problem]:
        """What each judge finds wrong with its check without its model (e.g. CLIP labels too long to encode)."""
        problems = []
        for section, check in case.checks.items():
            judge = judges[section]
            self._judges.setdefault(section, judge)
            problems.extend(judge.problems_without_model(check, case, self.config))
        return problems

    def check_prompts(self, case: Case) -> None:
        """Warn about texts the encoder truncates; called while the case's file is collected.

        Collection is where pytest turns warnings into errors under `-W error`, and then the file
        becomes a collection error that names the case, as for any other problem in it.
        """
        self.cases += 1
        if self._tokenizer is None:
            self._tokenizer = load_local_tokenizer(self.model, "tokenizer")
        if isinstance(self._tokenizer, LocalTokenizer):
            warn_truncated(case, truncation_notes(self._tokenizer, case))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed:  # collection errors: let pytest report them as usual
            return False
        return True  # nothing runs in check mode

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tokenizer = self._tokenizer
        if isinstance(tokenizer, LocalTokenizer):
            prompt_note = f"prompt lengths checked with the tokenizer in {tokenizer.source}"
        elif isinstance(tokenizer, TokenizerNotFound):
            prompt_note = f"prompt lengths not checked: {tokenizer.reason}"
        else:  # no case was collected
            prompt_note = "no prompt to check"
        notes = [prompt_note]
        for judge in self._judges.values():
            note = judge.check_mode_note()
            if note:
                notes.append(note)
        terminalreporter.write_sep("-", f"t2i-check: {self.cases} cases validated; {'; '.join(notes)}; no model loaded")
