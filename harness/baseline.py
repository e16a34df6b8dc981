"""Regression baselines: each item's scores saved under baselines/NAME/, and later runs judged against them.

A baseline is one JSON file per case file (sorted keys, one entry per case and seed, probabilities
rounded to 4 places) so that a change reads as a small diff in code review. Comparing against one
fails an item whose intended-label probability or margin dropped by more than the tolerance, or whose
CLIP or ResNet verdict went from pass to fail; an item the baseline does not know is reported as new.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest

from harness.atomic import atomic_write_text

if TYPE_CHECKING:
    from collections.abc import Generator

DEFAULT_TOLERANCE = 0.05
BASELINES_DIR = "baselines"
FORMAT_VERSION = 1
DIGITS = 4  # rounding of stored scores: finer than any tolerance worth setting, and no churn in diffs
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
MAX_NAME_LENGTH = 100  # a folder name: well under the file system's 255
# A baseline file is named after its case file plus ".json"; a longer name is shortened with a hash
# (the file's own "file" field says which case file it is).
_MAX_FILE_COMPONENT = 200
_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_EPSILON = 1e-9  # so that a drop of exactly the tolerance passes despite float rounding

STATUSES = ("regressed", "improved", "unchanged", "new")


class BaselineError(Exception):
    """A baseline that cannot be read, or a name that cannot be one."""


def item_key(case: str, seed: int) -> str:
    """How an item is named inside a baseline file: as pytest names it, without the file."""
    return f"{case}[seed={seed}]"


# ---------------------------------------------------------------------------------------------
# What is stored per item, and how two of them compare.


@dataclass(frozen=True)
class Scores:
    """The numbers a baseline keeps for one item (and that a comparison reads off either side)."""

    case: str
    seed: int
    labels: tuple[str, ...]  # the CLIP labels, intended first: scores under other labels do not compare
    clip_prob: float  # CLIP probability of the intended label
    clip_margin: float  # ... minus the best distractor's
    clip_passed: bool
    resnet_class: str | None = None  # the most probable of the expected ImageNet classes
    resnet_prob: float | None = None
    resnet_passed: bool | None = None
    cache_key: str | None = None

    @property
    def passed(self) -> bool:
        return self.clip_passed and self.resnet_passed is not False

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Scores | None:
        """An item's scores from its results.json record; None when it was not scored."""
        clip = record.get("clip")
        if not clip:
            return None
        probs = [float(p) for p in clip["probs"]]
        resnet = record.get("resnet")
        resnet_class = resnet_prob = resnet_passed = None
        if resnet:
            best = max(range(len(resnet["expect"])), key=lambda i: float(resnet["expect_probs"][i]))
            resnet_class = str(resnet["expect"][best])
            resnet_prob = float(resnet["expect_probs"][best])
            resnet_passed = bool(resnet["passed"])
        return cls(
            case=str(record["case"]),
            seed=int(record["seed"]),
            labels=tuple(clip["labels"]),
            clip_prob=probs[0],
            clip_margin=probs[0] - max(probs[1:]),
            clip_passed=bool(clip["passed"]),
            resnet_class=resnet_class,
            resnet_prob=resnet_prob,
            resnet_passed=resnet_passed,
            cache_key=record.get("cache_key"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "seed": self.seed,
            "cache_key": self.cache_key,
            "clip": {
                "labels": list(self.labels),
                "prob": round(self.clip_prob, DIGITS),
                "margin": round(self.clip_margin, DIGITS),
                "passed": self.clip_passed,
            },
            "resnet": None
            if self.resnet_passed is None
            else {
                "class": self.resnet_class,
                "prob": round(self.resnet_prob or 0.0, DIGITS),
                "passed": self.resnet_passed,
            },
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> Scores:
        """An entry of a baseline file; json_input.ShapeError (a ValueError) names the field that is wrong."""
        from harness.json_input import Fields, boolean, fields, list_of, number, optional, text, whole

        entry = Fields(data, where)
        clip = entry.get("clip", fields("an object with labels, prob, margin and passed"))
        resnet = entry.get("resnet", optional(fields("an object with class, prob and passed")), None)
        return cls(
            case=entry.get("case", text()),
            seed=entry.get("seed", whole(0, 2**64 - 1)),
            labels=clip.get("labels", list_of(text(), min_length=2)),
            clip_prob=clip.get("prob", number()),
            clip_margin=clip.get("margin", number()),
            clip_passed=clip.get("passed", boolean()),
            resnet_class=None if resnet is None else resnet.get("class", text()),
            resnet_prob=None if resnet is None else resnet.get("prob", number()),
            resnet_passed=None if resnet is None else resnet.get("passed", boolean()),
            cache_key=entry.get("cache_key", optional(text()), None),
        )


@dataclass(frozen=True)
class Drift:
    """How one item's scores moved from ``before`` to ``after``."""

    status: str  # one of STATUSES
    tolerance: float
    before: Scores | None
    after: Scores | None
    note: str = ""  # why an item counts as new

    @property
    def prob_delta(self) -> float | None:
        return None if self.before is None or self.after is None else self.after.clip_prob - self.before.clip_prob

    @property
    def margin_delta(self) -> float | None:
        return None if self.before is None or self.after is None else self.after.clip_margin - self.before.clip_margin

    @property
    def resnet_delta(self) -> float | None:
        if (
            self.before is None
            or self.after is None
            or self.before.resnet_prob is None
            or self.after.resnet_prob is None
        ):
            return None
        return self.after.resnet_prob - self.before.resnet_prob

    @property
    def flips(self) -> tuple[str, ...]:
        """The verdicts that went from pass to fail."""
        if self.before is None or self.after is None:
            return ()
        flipped = []
        if self.before.clip_passed and not self.after.clip_passed:
            flipped.append("CLIP")
        if self.before.resnet_passed and self.after.resnet_passed is False:
            flipped.append("ResNet")
        return tuple(flipped)

    @property
    def severity(self) -> tuple[int, float]:
        """Sort key, worst first: verdict flips, then the larger drop in probability or margin."""
        deltas = [d for d in (self.prob_delta, self.margin_delta) if d is not None]
        return (0 if self.flips else 1, min(deltas) if deltas else math.inf)

    def to_json(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "status": self.status,
            "tolerance": self.tolerance,
            "note": self.note or None,
            "before": None if self.before is None else self.before.to_json(),
            "prob_delta": self.prob_delta,
            "margin_delta": self.margin_delta,
            "resnet_delta": self.resnet_delta,
            "flips": list(self.flips),
        }

    def explain(self, name: str) -> str:
        """The table a regressed item prints (a line for the other statuses)."""
        if self.status == "new":
            return f"baseline {name!r}: new item ({self.note})"
        before, after = self.before, self.after
        assert before is not None and after is not None
        problems = []
        if self.flips:
            problems.append(" and ".join(self.flips) + " verdict went from pass to fail")
        dropped = [
            what
            for what, d in (("probability", self.prob_delta), ("margin", self.margin_delta))
            if _dropped(d, self.tolerance)
        ]
        if dropped:
            problems.append(
                f"intended-label {' and '.join(dropped)} dropped by more than the tolerance {self.tolerance:g}"
            )
        quiet = (
            {"unchanged": "no change beyond", "improved": "improved by more than"}[self.status] if not problems else ""
        )
        head = f"baseline {name!r}: " + (
            "; ".join(problems) if problems else f"{quiet} the tolerance {self.tolerance:g}"
        )

        def row(what: str, old: float | None, new: float | None, delta: float | None, flag: bool) -> str:
            cells = [f"{v:9.4f}" if v is not None else f"{'-':>9}" for v in (old, new)]
            # round() first, so that a delta of -0.00001 shows as +0.0000 rather than -0.0000
            shown_delta = f"{round(delta, DIGITS) + 0.0:+9.4f}" if delta is not None else f"{'':9}"
            mark = f"  <- dropped more than {self.tolerance:g}" if flag else ""
            return f"  {what:22}{cells[0]}{cells[1]}  {shown_delta}{mark}".rstrip()

        def verdict(what: str, old: bool | None, new: bool | None) -> str:
            words = {True: "pass", False: "fail", None: "-"}
            mark = "  <- flipped" if old and new is False else ""
            return f"  {what:22}{words[old]:>9}{words[new]:>9}{mark}"

        lines = [
            head + ":",
            f"  {'':22}{'baseline':>9}{'now':>9}  {'delta':>9}",
            row(
                "CLIP probability",
                before.clip_prob,
                after.clip_prob,
                self.prob_delta,
                _dropped(self.prob_delta, self.tolerance),
            ),
            row(
                "CLIP margin",
                before.clip_margin,
                after.clip_margin,
                self.margin_delta,
                _dropped(self.margin_delta, self.tolerance),
            ),
            verdict("CLIP verdict", before.clip_passed, after.clip_passed),
        ]
        if before.resnet_passed is not None or after.resnet_passed is not None:
            lines.append(
                row(
                    f"ResNet {after.resnet_class or before.resnet_class}"[:22],
                    before.resnet_prob,
                    after.resnet_prob,
                    self.resnet_delta,
                    False,
                )
            )
            lines.append(verdict("ResNet verdict", before.resnet_passed, after.resnet_passed))
        return "\n".join(lines)


def _dropped(delta: float | None, tolerance: float) -> bool:
    return delta is not None and -delta > tolerance + _EPSILON


def _rose(delta: float | None, tolerance: float) -> bool:
    return delta is not None and delta > tolerance + _EPSILON


def classify(before: Scores | None, after: Scores, tolerance: float) -> Drift:
    """Regressed, improved, unchanged (within the tolerance) or new: one rule for baselines and compare."""
    if before is None:
        return Drift("new", tolerance, None, after, note="no baseline entry")
    if before.labels != after.labels:
        return Drift(
            "new",
            tolerance,
            None,
            after,
            note="the CLIP labels changed since the baseline, so the scores do not compare",
        )
    drift = Drift("unchanged", tolerance, before, after)
    if drift.flips or _dropped(drift.prob_delta, tolerance) or _dropped(drift.margin_delta, tolerance):
        status = "regressed"
    elif (
        _rose(drift.prob_delta, tolerance)
        or _rose(drift.margin_delta, tolerance)
        or (not before.clip_passed and after.clip_passed)
        or (before.resnet_passed is False and after.resnet_passed)
    ):
        status = "improved"
    else:
        return drift
    return Drift(status, tolerance, before, after)


# ---------------------------------------------------------------------------------------------
# Baseline files on disk.


@dataclass
class BaselineFile:
    """One case file's entries in one baseline."""

    name: str
    file: str  # the case file's path relative to the rootdir, as in its node ids
    entries: dict[str, Scores]  # by item_key
    environment: dict[str, str]

    def to_text(self) -> str:
        document = {
            "version": FORMAT_VERSION,
            "baseline": self.name,
            "file": self.file,
            "environment": self.environment,
            "items": {key: scores.to_json() for key, scores in self.entries.items()},
        }
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def validate_name(name: str, where: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise BaselineError(
            f"{where} is {len(name)} characters long; a baseline name names a folder under {BASELINES_DIR}/, "
            f"so keep it to {MAX_NAME_LENGTH} (e.g. 'main' or 'sd15-euler')."
        )
    if not NAME_PATTERN.match(name):
        raise BaselineError(
            f"{where}={name!r} is not a baseline name: use letters, digits, '_', '.' and '-', starting with a "
            f"letter or digit (it names a folder under {BASELINES_DIR}/)."
        )
    return name


def baseline_path(root: Path, name: str, file: str) -> Path:
    """baselines/NAME/<case file path>.json, built from sanitised parts so that it never escapes."""
    parts = [_UNSAFE_PATH_CHARS.sub("_", part).lstrip(".") or "_" for part in PurePosixPath(file).parts]
    if parts and len(parts[-1]) > _MAX_FILE_COMPONENT:
        digest = hashlib.sha256(file.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        parts[-1] = f"{parts[-1][:_MAX_FILE_COMPONENT]}-{digest}"
    folder = (root / BASELINES_DIR / name).resolve()
    path = folder.joinpath(*parts[:-1], parts[-1] + ".json").resolve() if parts else folder / "_.json"
    if not path.is_relative_to(folder):
        raise BaselineError(f"refusing to write a baseline outside {folder}: {path}")
    return path


def read_baseline_file(path: Path) -> BaselineFile:
    """One baseline file, read as untrusted JSON (harness.json_input); BaselineError in one line otherwise."""
    from harness.json_input import Fields, JsonInputError, ShapeError, mapping_of, optional, read_json, text

    fix = "restore it from version control or save the baseline again with --t2i-save-baseline."
    try:
        fields = Fields(read_json(path, "t2i baseline file"))
        version = fields.get("version", _any)
        if version != FORMAT_VERSION:
            raise ShapeError("version", str(FORMAT_VERSION), version)
        entries = {}
        for key, value in fields.get("items", mapping_of(_any)).items():
            scores = Scores.from_json(value, f"items.{key}")
            if key != item_key(scores.case, scores.seed):
                raise ShapeError(f"items.{key}", f"an entry named {item_key(scores.case, scores.seed)!r}", key)
            entries[key] = scores
        environment: dict[str, str] | None = fields.get("environment", optional(mapping_of(text())), None)
        return BaselineFile(fields.get("baseline", text()), fields.get("file", text()), entries, environment or {})
    except JsonInputError as exc:
        raise BaselineError(f"{exc}; {fix}") from None
    except ShapeError as exc:
        raise BaselineError(f"{path}: not a readable t2i baseline file: {exc}; {fix}") from None


def _any(value: Any, field: str) -> Any:
    return value


_any.expected = "a value"  # type: ignore[attr-defined]


def read_baseline_dir(folder: Path) -> dict[str, BaselineFile]:
    """Every baseline file under ``folder`` (baselines/NAME), by case file."""
    files = {}
    for path in sorted(folder.rglob("*.json")):
        baseline = read_baseline_file(path)
        files[baseline.file] = baseline
    return files


def available_names(root: Path) -> list[str]:
    folder = root / BASELINES_DIR
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


@dataclass(frozen=True)
class SaveSummary:
    folder: Path
    files: int
    added: int
    updated: int
    removed: int


def save_baseline(
    root: Path,
    name: str,
    records: Iterable[dict[str, Any]],
    environment: dict[str, str],
    case_seeds: dict[str, set[str] | None],
) -> SaveSummary:
    """Merge this run's scores into baselines/NAME/: run items replace their entries, the rest stay.

    ``case_seeds`` maps each case file to the item keys it defines now (None when it cannot be read):
    entries for cases or seeds deleted from the file are dropped, so baselines do not collect dead rows.
    """
    by_file: dict[str, dict[str, Scores]] = {}
    for record in records:
        scores = Scores.from_record(record)
        if scores is not None:
            by_file.setdefault(str(record["file"]), {})[item_key(scores.case, scores.seed)] = scores
    added = updated = removed = 0
    for file, fresh in sorted(by_file.items()):
        path = baseline_path(root, name, file)
        old = read_baseline_file(path).entries if path.is_file() else {}
        keep = case_seeds.get(file)
        merged = {key: value for key, value in old.items() if keep is None or key in keep}
        removed += len(old) - len(merged)
        for key, scores in fresh.items():
            if key in merged:
                updated += 1
            else:
                added += 1
            merged[key] = scores
        atomic_write_text(path, BaselineFile(name, file, dict(sorted(merged.items())), environment).to_text())
    return SaveSummary(root / BASELINES_DIR / name, len(by_file), added, updated, removed)


# ---------------------------------------------------------------------------------------------
# The pytest side: options, the check after each item's own checks, saving at the end.


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
    cli_compare = config.getoption("t2i_baseline")
    compare = cli_compare if cli_compare is not None else (config.getini("t2i_baseline").strip() or None)
    compare_where = "--t2i-baseline" if cli_compare is not None else "--t2i-baseline (ini option t2i_baseline)"
    save = config.getoption("t2i_save_baseline")
    cli_tolerance = config.getoption("t2i_tolerance")
    raw_tolerance = cli_tolerance if cli_tolerance is not None else config.getini("t2i_tolerance").strip()
    tolerance_where = "--t2i-tolerance" if cli_tolerance is not None else "--t2i-tolerance (ini option t2i_tolerance)"
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

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        from harness.checks import CaseCheckFailed
        from harness.collect import CaseItem

        if self.settings.compare is None or not isinstance(item, CaseItem):
            return (yield)
        try:
            result = yield
        except CaseCheckFailed as exc:
            # The item failed its own checks; say how that compares with the baseline too.
            drift = self._judge(item)
            if drift is None:
                raise
            raise CaseCheckFailed(f"{exc}\n{drift.explain(self.settings.compare)}") from None
        drift = self._judge(item)
        if drift is not None and drift.status == "regressed":
            raise CaseCheckFailed(drift.explain(self.settings.compare))
        return result

    def _judge(self, item: Any) -> Drift | None:
        from harness.state import get_state

        record = get_state(self.config).records.get(item.nodeid)
        if record is None:
            return None
        after = Scores.from_record(record.to_json())
        if after is None:
            return None
        baseline = self.settings.baseline.get(record.file)
        before = None if baseline is None else baseline.entries.get(item_key(after.case, after.seed))
        tolerance = (
            item.case.tolerance if getattr(item.case, "tolerance", None) is not None else self.settings.tolerance
        )
        drift = classify(before, after, tolerance)
        record.baseline = drift.to_json(str(self.settings.compare))
        return drift

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.settings.save is None or hasattr(self.config, "workerinput"):
            return  # under xdist, the controller saves what the workers reported
        from harness.state import get_state

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
        from harness.cases import CaseFileError, load_case_file

        try:
            cases = load_case_file(self.config.rootpath / file)
        except (CaseFileError, OSError):
            return None
        return {item_key(case.id, seed) for case in cases for seed in case.seeds}

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from harness.state import get_state

        if self.settings.compare is not None:
            counts = dict.fromkeys(STATUSES, 0)
            for record in get_state(self.config).finished.values():
                baseline = record.get("baseline")
                if baseline:
                    counts[baseline["status"]] += 1
            terminalreporter.write_line(
                f"t2i baseline {self.settings.compare!r} (tolerance {self.settings.tolerance:g}): "
                + ", ".join(f"{count} {status}" for status, count in counts.items())
            )
        if self.save_problem is not None:
            terminalreporter.write_line(self.save_problem, red=True, bold=True)
        if self.saved is not None:
            saved = self.saved
            terminalreporter.write_line(
                f"t2i baseline {self.settings.save!r} saved to {saved.folder}: {saved.files} file(s), "
                f"{saved.added} new, {saved.updated} updated, {saved.removed} removed item(s)"
            )
