"""Per-session state of the plugin, kept in config.stash."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.fast_exit import freeze_heap_at_exit
from harness.options import CheckedOptions, Settings, resolve_settings, run_environment
from harness.report_dir import ReportDir
from harness.results import ItemRecord
from harness.runner import CaseRunner


@dataclass
class HarnessState:
    config: pytest.Config
    checked: CheckedOptions  # the options, validated as far as possible without importing torch
    # What the report's environment section and results.json say about the run.
    environment: dict[str, str] = field(default_factory=dict)
    records: dict[str, ItemRecord] = field(default_factory=dict)  # by node id, in run order
    # Each finished item's record by node id, in the order items first finished: a rerun
    # (pytest-rerunfailures) replaces its item's record rather than adding one.
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors_seen: set[str] = field(default_factory=set)  # models whose load failure was already explained
    loaded_pipeline: Any = None  # what the plugin's own t2i_pipeline fixture returned, once it ran
    # The model's files fingerprint, computed once; a one-item list once computed (it may be None).
    files_fingerprint: list[dict[str, str] | None] = field(default_factory=list)
    _settings: Settings | None = None
    _runner: CaseRunner | None = None
    _output: ReportDir | None = None

    @property
    def report_dir(self) -> Path:
        return self.checked.report_dir

    @property
    def output(self) -> ReportDir:
        """Writes under the report dir; its ``problem`` is reported once, at the end of the run."""
        if self._output is None:
            self._output = ReportDir(self.report_dir, self.checked.where["t2i_report_dir"])
        return self._output

    @property
    def resolved(self) -> bool:
        return self._settings is not None

    @property
    def settings(self) -> Settings:
        """Resolved on first use (this imports torch), so runs that collect no case never import it."""
        if self._settings is None:
            self._settings = resolve_settings(self.config, self.checked)
            freeze_heap_at_exit()  # torch is imported now: exiting would be slow
            for key, value in run_environment(self._settings).items():
                # An xdist controller may already hold the workers' values, which are the ones that ran.
                self.environment.setdefault(key, value)
        return self._settings

    @property
    def runner(self) -> CaseRunner:
        if self._runner is None:
            from harness.cache_maintenance import SCORES_DIR
            from harness.image_cache import ImageCache
            from harness.score_cache import ScoreCache

            settings = self.settings
            cache_dir = settings.cache_dir
            self._runner = CaseRunner(
                settings.report_dir,
                cache=ImageCache(cache_dir) if cache_dir is not None else None,
                scores=ScoreCache(cache_dir / SCORES_DIR) if cache_dir is not None else None,
                refresh=settings.refresh,
                batch_size=settings.batch_size,
                output=self.output,
                # An xdist worker learns which items it runs one at a time; only a case's own seeds
                # (kept on one worker by harness.xdist_scheduling) are sure to run here.
                same_case_only=hasattr(self.config, "workerinput"),
            )
        return self._runner


STATE_KEY = pytest.StashKey[HarnessState]()


def get_state(config: pytest.Config) -> HarnessState:
    return config.stash[STATE_KEY]
