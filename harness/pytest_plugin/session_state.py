"""Per-session state of the plugin, kept in config.stash."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.common.model_loading import ModelInfo
from harness.pytest_plugin.fast_exit import freeze_heap_at_exit
from harness.pytest_plugin.judges import SessionJudges
from harness.pytest_plugin.options import CheckedOptions, Settings, resolve_settings, run_environment
from harness.pytest_plugin.scored_images import ScoredImages
from harness.reports.report_dir import ReportDir
from harness.reports.results import ItemRecord


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
    # Each rate-gated case's comparison with the baseline, by (case file, case id): results.json's cases list.
    case_drifts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    errors_seen: set[str] = field(default_factory=set)  # models whose load failure was already explained
    loaded_pipeline: Any = None  # what the plugin's own t2i_pipeline fixture returned, once it ran
    # The model's files fingerprint, computed once; a one-item list once computed (it may be None).
    files_fingerprint: list[dict[str, str] | None] = field(default_factory=list)
    judges: SessionJudges = field(default_factory=SessionJudges)
    _settings: Settings | None = None
    _images: ScoredImages | None = None
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
    def images(self) -> ScoredImages:
        """Hands each case item its scored image, making images ahead in batches (see scored_images)."""
        if self._images is None:
            from harness.generation.image_cache import SCORES_DIR, ImageCache
            from harness.judging.score_cache import ScoreCache

            settings = self.settings
            cache_dir = settings.cache_dir
            if self.config.pluginmanager.has_plugin("t2i-ray"):
                from harness.pytest_plugin.ray_images import RayScoredImages
                from harness.pytest_plugin.ray_run import shared_cache

                # The actors read and write a cache on shared storage themselves; otherwise this process keeps it.
                driver_cache = cache_dir is not None and not shared_cache(self.config, self)
                self._images = RayScoredImages(
                    settings.report_dir,
                    cache=ImageCache(cache_dir) if driver_cache and cache_dir is not None else None,
                    refresh=settings.refresh,
                    batch_size=settings.batch_size,
                    output=self.output,
                )
                return self._images
            self._images = ScoredImages(
                settings.report_dir,
                cache=ImageCache(cache_dir) if cache_dir is not None else None,
                scores=ScoreCache(cache_dir / SCORES_DIR) if cache_dir is not None else None,
                refresh=settings.refresh,
                batch_size=settings.batch_size,
                output=self.output,
                # An xdist worker learns which items it runs one at a time; only a case's own seeds
                # (kept on one worker by harness.pytest_plugin.xdist_scheduling) are sure to run here.
                same_case_only=hasattr(self.config, "workerinput"),
            )
        return self._images


STATE_KEY = pytest.StashKey[HarnessState]()


def get_state(config: pytest.Config) -> HarnessState:
    return config.stash[STATE_KEY]


def note_model(config: pytest.Config, info: ModelInfo) -> None:
    """Name a loaded model in the report's environment section and results.json."""
    get_state(config).environment[f"t2i {info.role}"] = f"{info.ref} @ {info.revision}"
