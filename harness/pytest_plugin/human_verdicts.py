"""Human verdicts in a run: the --t2i-human-verdicts option, the labels file read once, each item's notes.

The labels (baselines/reviewed-labels.json, written by ``python -m harness review``) are read once, before any
item runs: at collection when case items are collected (a run of other tests never reads the file, so a broken
one cannot stop them), or at start-up on an xdist controller, where a usage error is still one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.pytest_plugin.options import OptionSpec, add_option, given
from harness.reports.human_verdicts import DEFAULT_MODE, MODES, HumanNote, image_key, notes_for

if TYPE_CHECKING:
    from harness.judging.judge import Verdict
    from harness.reports.records import Record
    from harness.reports.reviewed_labels import HumanLabel, ImageKey

PLUGIN_NAME = "t2i-human"
OPTION = OptionSpec(
    "--t2i-human-verdicts",
    "t2i_human_verdicts",
    DEFAULT_MODE,
    "human verdicts from review (baselines/reviewed-labels.json) on an image with the same cache key: show them "
    "next to the judge's, or override (a human verdict that disagrees with the judge decides pass/fail)",
    "show|override",
)


def add_options(parser: pytest.Parser) -> None:
    add_option(parser, OPTION)


def resolve_mode(config: pytest.Config) -> str:
    """show or override; a bad value is a UsageError naming the option."""
    value, where, from_cli = given(config, OPTION.ini, OPTION.flag)
    mode = value if from_cli else (value.strip() or DEFAULT_MODE)
    if mode not in MODES:
        raise pytest.UsageError(
            f"{where}={mode!r} is not a human-verdicts mode: use show (human verdicts are shown next to the "
            "judge's; the default) or override (a human verdict that disagrees with the judge decides pass/fail)."
        )
    return str(mode)


def labels_root(config: pytest.Config) -> Path:
    """The folder that holds baselines/ (as harness.pytest_plugin.baseline_plugin resolves it)."""
    return config.inipath.parent if config.inipath else config.rootpath


class HumanVerdicts:
    """Registered by the harness plugin: the labels by image, and the notes each record gets."""

    def __init__(self, config: pytest.Config, *, load_now: bool = False) -> None:
        from harness.reports.reviewed_labels import labels_path

        self.config = config
        self.override = resolve_mode(config) == "override"
        self.path = labels_path(labels_root(config))
        self._by_image: dict[ImageKey, dict[str, HumanLabel]] | None = None
        if load_now:
            self.load()

    def load(self) -> dict[ImageKey, dict[str, HumanLabel]]:
        """The labels by image, read on first use; a bad file is a UsageError (its message names the file)."""
        if self._by_image is None:
            from harness.reports.reviewed_labels import LabelsError, by_image, read_labels

            try:
                self._by_image = by_image(read_labels(self.path).values())
            except LabelsError as exc:
                raise pytest.UsageError(str(exc)) from None
        return self._by_image

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        from harness.pytest_plugin.collect import CaseItem

        if not config.getoption("collectonly", False) and any(isinstance(item, CaseItem) for item in items):
            self.load()  # before any item runs

    def notes(
        self, file: str, case: str, seed: int, cache_key: str | None, verdicts: dict[str, Verdict]
    ) -> dict[str, HumanNote]:
        """The human verdicts on this image (same file, case, seed and cache key) for the judges in ``verdicts``."""
        key = image_key(file, case, seed, cache_key)
        return notes_for(self.load().get(key) if key is not None else None, verdicts, self.override)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from harness.common.json_input import ShapeError
        from harness.pytest_plugin.session_state import get_state
        from harness.reports.human_verdicts import human_agreement
        from harness.reports.records import parse_record

        records: list[Record] = []
        for raw in get_state(self.config).finished.values():
            try:
                records.append(parse_record(raw))
            except ShapeError:
                continue
        found = human_agreement(records)
        if not found:
            return
        judges = ", ".join(f"{a.title} agreed on {a.agreed} of {a.reviewed}" for a in found)
        overridden = sum(a.overridden for a in found)
        applied = f"; {overridden} judge verdict(s) decided by the human verdict" if self.override else ""
        terminalreporter.write_line(f"t2i human verdicts ({self.path.name}): {judges}{applied}")
