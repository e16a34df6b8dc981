"""Baselines in a run: the options, each case item compared with the baseline, saving one at the end."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.pytest_plugin.options import given
from harness.reports.baseline import (
    BASELINES_DIR,
    DEFAULT_TOLERANCE,
    STATUSES,
    BaselineError,
    BaselineFile,
    Drift,
    SaveSummary,
    available_names,
    classify,
    item_key,
    read_baseline_dir,
    save_baseline,
    status_counts,
    validate_name,
)
from harness.reports.case_rates import CaseDrift, CaseRate, compare_rates
from harness.reports.results import ItemRecord


def baseline_counts(
    records: Iterable[dict[str, Any]], case_drifts: dict[tuple[str, str], dict[str, Any]]
) -> tuple[dict[str, int], dict[str, int]]:
    """How many items, and how many cases, have each baseline status.

    A rate-gated case has its own status (its rate and means against the baseline's); any other case takes its
    worst item's: regressed, then nondeterministic, improved, new, and unchanged only when all its items are.
    """
    items = dict.fromkeys(STATUSES, 0)
    by_case: dict[tuple[str, str], set[str]] = {}
    for record in records:
        baseline = record.get("baseline")
        if baseline:
            items[baseline["status"]] += 1
            by_case.setdefault((str(record["file"]), str(record["case"])), set()).add(baseline["status"])
    cases = dict.fromkeys(STATUSES, 0)
    for key, statuses in by_case.items():
        if key not in case_drifts:
            cases[next(status for status in _WORST_FIRST if status in statuses)] += 1
    for drift in case_drifts.values():
        cases[drift["status"]] += 1
    return items, cases


_WORST_FIRST = ("regressed", "nondeterministic", "improved", "new", "unchanged")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("t2i")
    group.addoption(
        "--t2i-save-baseline",
        dest="t2i_save_baseline",
        default=None,
        metavar="NAME",
        help=f"save every scored item's scores to {BASELINES_DIR}/NAME/ (merged into what is there). "
        "No ini twin: updating a baseline is always asked for explicitly. Default: None",
    )
    group.addoption(
        "--t2i-baseline",
        dest="t2i_baseline",
        default=None,
        metavar="NAME",
        help=f"fail items that regressed against {BASELINES_DIR}/NAME/; items it lacks are reported as new. "
        "Ini: t2i_baseline. Default: None",
    )
    group.addoption(
        "--t2i-tolerance",
        dest="t2i_tolerance",
        default=None,
        metavar="FRACTION",
        help="how far the intended label's CLIP probability or margin may drop below the baseline before the "
        f"item fails; a case's own 'tolerance:' wins. Ini: t2i_tolerance. Default: {DEFAULT_TOLERANCE!r}",
    )
    parser.addini(
        "t2i_baseline", help="baseline to compare against (same as --t2i-baseline)", type="string", default=""
    )
    parser.addini(
        "t2i_tolerance",
        help="allowed drop below the baseline (same as --t2i-tolerance)",
        type="string",
        default=str(DEFAULT_TOLERANCE),
    )


@dataclass(frozen=True)
class BaselineSettings:
    root: Path  # the folder that holds baselines/
    save: str | None
    compare: str | None
    tolerance: float
    baseline: dict[str, BaselineFile]  # the compared baseline, by case file


def resolve_baseline_settings(config: pytest.Config) -> BaselineSettings:
    """Validate the baseline options; a bad value is a UsageError naming the option."""
    root = config.inipath.parent if config.inipath else config.rootpath
    compare, compare_where, from_cli = given(config, "t2i_baseline", "--t2i-baseline")
    compare = compare if from_cli else (compare.strip() or None)
    save = config.getoption("t2i_save_baseline")
    raw_tolerance, tolerance_where, from_cli = given(config, "t2i_tolerance", "--t2i-tolerance")
    raw_tolerance = raw_tolerance if from_cli else raw_tolerance.strip()
    try:
        tolerance = float(raw_tolerance)
    except ValueError:
        tolerance = math.nan
    if not 0 <= tolerance <= 1:
        raise pytest.UsageError(
            f"{tolerance_where}={raw_tolerance!r} is not a tolerance: give a number in [0, 1], "
            f"e.g. {DEFAULT_TOLERANCE} (the largest drop in probability or margin that still passes)."
        )
    try:
        if save is not None:
            validate_name(save, "--t2i-save-baseline")
            _check_folder(root, save, "--t2i-save-baseline")
        files: dict[str, BaselineFile] = {}
        if compare is not None:
            validate_name(compare, compare_where)
            _check_folder(root, compare, compare_where)
            folder = root / BASELINES_DIR / compare
            if folder.is_dir():
                files = read_baseline_dir(folder)
            elif compare != save:
                names = ", ".join(available_names(root)) or "none yet"
                raise BaselineError(
                    f"{compare_where}={compare!r}: there is no baseline {folder} (saved baselines: {names}). "
                    f"Save one first with --t2i-save-baseline {compare}."
                )
    except BaselineError as exc:
        raise pytest.UsageError(str(exc)) from None
    return BaselineSettings(root, save, compare, tolerance, files)


def _check_folder(root: Path, name: str, where: str) -> None:
    """Refuse at start-up what would only fail once the whole run is done: a file where a folder must be."""
    for folder in (root / BASELINES_DIR, root / BASELINES_DIR / name):
        if folder.exists() and not folder.is_dir():
            raise BaselineError(
                f"{where}={name!r}: {folder} is a file, but baselines are kept in a folder of that name. "
                "Move or rename the file."
            )


class BaselinePlugin:
    """Registered by the harness plugin: judges each case item against the baseline, saves one at the end."""

    def __init__(self, config: pytest.Config, settings: BaselineSettings) -> None:
        self.config = config
        self.settings = settings
        self.saved: SaveSummary | None = None
        self.save_problem: str | None = None

    def compare(self, item: Any, record: ItemRecord) -> Drift | None:
        """How the item's verdicts compare with the baseline (noted in its record); None without one."""
        from harness.reports.baseline import ItemScores

        if self.settings.compare is None:
            return None
        after = ItemScores.of(record.case, record.seed, record.cache_key, record.verdicts, record.image_sha256)
        if after is None:
            return None
        baseline = self.settings.baseline.get(record.file)
        before = None if baseline is None else baseline.entries.get(item_key(after.case, after.seed))
        drift = classify(before, after, self._tolerance(item))
        record.baseline = drift.to_json(str(self.settings.compare))
        return drift

    def compare_case(self, item: Any, rate: CaseRate) -> CaseDrift | None:
        """How a rate-gated case's rate and mean scores compare with the baseline's; None without one."""
        if self.settings.compare is None:
            return None
        baseline = self.settings.baseline.get(rate.file)
        before = None if baseline is None else baseline.cases.get(rate.case)
        return compare_rates(before, rate, self._tolerance(item))

    def _tolerance(self, item: Any) -> float:
        return item.case.tolerance if item.case.tolerance is not None else self.settings.tolerance

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.settings.save is None or hasattr(self.config, "workerinput"):
            return  # under xdist, the controller saves what the workers reported
        from harness.pytest_plugin.session_state import get_state

        state = get_state(self.config)
        records = list(state.finished.values())
        files = {str(record["file"]) for record in records}
        try:
            self.saved = save_baseline(
                self.settings.root,
                self.settings.save,
                records,
                state.environment,
                {f: self._item_keys(f) for f in files},
            )
        except (OSError, BaselineError) as exc:
            # Raised here, it would stop pytest-html writing the report: say it, and fail the run.
            detail = f"{exc.strerror or exc} ({exc.filename})" if isinstance(exc, OSError) else str(exc)
            self.save_problem = (
                f"t2i baseline {self.settings.save!r} was not saved: {detail}. The run's results.json and report "
                "are written; fix the cause and run again with --t2i-save-baseline."
            )
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _item_keys(self, file: str) -> set[str] | None:
        from harness.cases.case_file import CaseFileError, load_case_file
        from harness.pytest_plugin.session_state import get_state

        try:
            cases = load_case_file(self.config.rootpath / file, get_state(self.config).judges.by_section.values())
        except (CaseFileError, OSError):
            return None
        return {item_key(case.id, seed) for case in cases for seed in case.seeds}

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from harness.pytest_plugin.session_state import get_state

        if self.settings.compare is not None:
            state = get_state(self.config)
            items, cases = baseline_counts(state.finished.values(), state.case_drifts)
            terminalreporter.write_line(
                f"t2i baseline {self.settings.compare!r} (tolerance {self.settings.tolerance:g}): "
                f"{status_counts(items)}; cases: {status_counts(cases)}"
            )
        if self.save_problem is not None:
            terminalreporter.write_line(self.save_problem, red=True, bold=True)
        if self.saved is not None:
            saved = self.saved
            terminalreporter.write_line(
                f"t2i baseline {self.settings.save!r} saved to {saved.folder}: {saved.files} file(s), "
                f"{saved.added} new, {saved.updated} updated, {saved.removed} removed item(s)"
            )
