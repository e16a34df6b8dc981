"""Which judges apply where: what the pytest_t2i_judges hook returns, checked once and kept for the session."""

from __future__ import annotations

from typing import Any

import pytest

from harness.judging.formats import ordered_sections
from harness.judging.judge import SECTION_PATTERN, Judge


class JudgeSetupError(Exception):
    """A registered judge that cannot be used; the message names it and says how to fix it."""


class SessionJudges:
    """Every judge seen in this session, by section: one instance per section, whichever hooks returned it."""

    def __init__(self) -> None:
        self.by_section: dict[str, Judge[Any, Any]] = {}
        # for_config's answer and the number of plugins it was asked with: asked again (the hook called, new
        # judge instances made and checked) only once a conftest.py has been loaded since.
        self._for_config: tuple[int, dict[str, Judge[Any, Any]]] | None = None

    def for_node(self, node: pytest.Collector | pytest.Item) -> dict[str, Judge[Any, Any]]:
        """The judges that apply to a node (its folder's conftest.py files included), built-ins first."""
        return self._register(node.ihook.pytest_t2i_judges(config=node.config))

    def for_config(self, config: pytest.Config) -> dict[str, Judge[Any, Any]]:
        """The judges installed plugins and the conftest.py files loaded so far add; a bad one is a usage error."""
        plugins = len(config.pluginmanager.get_plugins())
        if self._for_config is not None and self._for_config[0] == plugins:
            return self._for_config[1]
        try:
            judges = self._register(config.hook.pytest_t2i_judges(config=config))
        except JudgeSetupError as exc:
            raise pytest.UsageError(str(exc)) from None
        self._for_config = (plugins, judges)
        return judges

    def _register(self, returned: list[Any]) -> dict[str, Judge[Any, Any]]:
        judges: dict[str, Judge[Any, Any]] = {}
        for batch in returned:
            for judge in batch or ():
                if not isinstance(judge, Judge):
                    raise JudgeSetupError(
                        f"pytest_t2i_judges returned {judge!r}, which is not a harness.judging.Judge: return "
                        "instances of Judge subclasses (e.g. `return [BrightnessJudge()]`)."
                    )
                section = getattr(type(judge), "section", None)
                if not isinstance(section, str) or not SECTION_PATTERN.match(section):
                    raise JudgeSetupError(
                        f"judge {type(judge).__qualname__} has section {section!r}: set the class attribute "
                        "`section` to the case-file key it reads (lowercase letters, digits and '_')."
                    )
                known = self.by_section.setdefault(section, judge)
                if type(known) is not type(judge):
                    raise JudgeSetupError(
                        f"two judges claim the case-file section {section!r}: "
                        f"{' and '.join(sorted((_name(known), _name(judge))))}. "
                        "Rename one judge's `section`."
                    )
                judges.setdefault(section, known)
        # The built-ins first, then the others by section: the same order in messages, pages and files.
        return {section: judges[section] for section in ordered_sections(judges)}

    def fixtures(self, config: pytest.Config) -> set[str]:
        """The model fixtures of every judge known so far, the installed ones included (a plain test may use
        `clip_scorer` in a run that collects no case file)."""
        self.for_config(config)
        return {judge.fixture for judge in self.by_section.values()}


def _name(judge: Judge[Any, Any]) -> str:
    return f"{type(judge).__module__}.{type(judge).__qualname__}"
