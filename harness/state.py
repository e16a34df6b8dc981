"""Per-session state of the plugin, kept in config.stash."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.options import Settings
from harness.results import ItemRecord
from harness.runner import CaseRunner


@dataclass
class HarnessState:
    settings: Settings
    runner: CaseRunner
    # What the report's environment section and results.json say about the run.
    environment: dict[str, str] = field(default_factory=dict)
    records: dict[str, ItemRecord] = field(default_factory=dict)  # by node id, in run order
    finished: list[dict[str, Any]] = field(default_factory=list)
    errors_seen: set[str] = field(default_factory=set)  # models whose load failure was already explained
    loaded_pipeline: Any = None  # what the plugin's own t2i_pipeline fixture returned, once it ran
    # The model's files fingerprint, computed once; a one-item list once computed (it may be None).
    files_fingerprint: list[dict[str, str] | None] = field(default_factory=list)


STATE_KEY = pytest.StashKey[HarnessState]()


def get_state(config: pytest.Config) -> HarnessState:
    return config.stash[STATE_KEY]
