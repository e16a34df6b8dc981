"""The hook through which judges are registered (added with pytest_addhooks, as pytest-html adds its own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.judging.judge import Judge


@pytest.hookspec
def pytest_t2i_judges(config: pytest.Config) -> list[Judge[Any, Any]]:
    """Return the judges this plugin or conftest.py adds (instances of harness.judging.Judge).

    Called for each case file with the hooks that apply to it: a judge from a conftest.py applies to the
    case files in and below that conftest's folder; one from an installed plugin, everywhere. Each judge's
    section is a key cases may use. Provide the model fixture the judge names in the same module as the
    judge's class, so that the score cache knows a conftest.py override of it apart.
    """
    raise NotImplementedError  # a hook specification: plugins implement it
