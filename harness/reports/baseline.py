"""Regression baselines: each item's scores saved under baselines/NAME/, and later runs judged against them.

A baseline is one JSON file per case file (sorted keys, one entry per case and seed, probabilities
rounded to 4 places) so that a change reads as a small diff in code review. Comparing against one
fails an item one of whose gated scores (each judge says which) dropped by more than the
tolerance, or one of whose
judge's verdict went from pass to fail; an item the baseline does not know is reported as new.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from harness.cases.item_id import item_name
from harness.common.atomic import atomic_write_text
from harness.common.names import SAFE_NAME, UNSAFE_PATH_CHARS
from harness.judging.formats import (
    BASELINE_NULL_SECTIONS,
    BASELINE_REQUIRED,
    LEGACY_DELTA_KEYS,
    baseline_section,
    is_section_name,
    ordered_sections,
    verdict_from_baseline,
)
from harness.judging.judge import Score, Verdict
from harness.reports.case_rates import CaseRate, case_rates

if TYPE_CHECKING:
    pass

DEFAULT_TOLERANCE = 0.05
BASELINES_DIR = "baselines"
FORMAT_VERSION = 1
DIGITS = 4  # rounding of stored scores: finer than any tolerance worth setting, and no churn in diffs
NAME_PATTERN = SAFE_NAME
MAX_NAME_LENGTH = 100  # a folder name: well under the file system's 255
# A baseline file is named after its case file plus ".json"; a longer name is shortened with a hash
# (the file's own "file" field says which case file it is).
_MAX_FILE_COMPONENT = 200
_EPSILON = 1e-9  # so that a drop of exactly the tolerance passes despite float rounding

# "nondeterministic": the image's inputs are unchanged (same cache key) but its scores moved: the pipeline
# did not give the same pixels again, which is not a regression of the prompt or the model.
STATUSES = ("regressed", "improved", "unchanged", "nondeterministic", "new")


def status_counts(counts: Mapping[str, int]) -> str:
    """'1 regressed, 2 improved, 40 unchanged, 3 new' in the order given; 'N nondeterministic' only when there are
    any (the line's format predates that status, and scripts read it)."""
    return ", ".join(f"{count} {status}" for status, count in counts.items() if count or status != "nondeterministic")


class BaselineError(Exception):
    """A baseline that cannot be read, or a name that cannot be one."""


def item_key(case: str, seed: int) -> str:
    """How an item is named inside a baseline file: as pytest names it, without the file."""
    return item_name(case, seed)


# ---------------------------------------------------------------------------------------------
# What is stored per item, and how two of them compare.


@dataclass(frozen=True)
class ItemScores:
    """The verdicts a baseline keeps for one item (and that a comparison reads off either side), by judge."""

    case: str
    seed: int
    verdicts: dict[str, Verdict]  # by judge section, in column order
    cache_key: str | None = None
    image_sha256: str | None = None  # the pixels' digest

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.verdicts.values())

    @classmethod
    def of(
        cls,
        case: str,
        seed: int,
        cache_key: str | None,
        verdicts: dict[str, Verdict],
        image_sha256: str | None = None,
    ) -> ItemScores | None:
        """An item's scores; None when it was not scored."""
        if not verdicts:
            return None
        return cls(case, seed, {s: verdicts[s] for s in ordered_sections(verdicts)}, cache_key, image_sha256)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"case": self.case, "seed": self.seed, "cache_key": self.cache_key}
        if self.image_sha256 is not None:
            document["image_sha256"] = self.image_sha256
        for section in ordered_sections({*self.verdicts, *BASELINE_NULL_SECTIONS}):
            verdict = self.verdicts.get(section)
            document[section] = None if verdict is None else baseline_section(section, verdict, DIGITS)
        return document

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> ItemScores:
        """An entry of a baseline file; json_input.ShapeError (a ValueError) names the field that is wrong."""
        from harness.common.json_input import Fields, optional, refused, text, whole

        entry = Fields(data, where)
        sections = [
            k for k in entry.data if k not in _ENTRY_FIELDS and is_section_name(k) and entry.data[k] is not None
        ]
        verdicts = {s: verdict_from_baseline(s, entry.data[s], entry.field(s)) for s in ordered_sections(sections)}
        if not verdicts:  # name the missing field, as before judges were pluggable
            entry.get(BASELINE_REQUIRED[0], refused(BASELINE_REQUIRED[1]))
        return cls(
            case=entry.get("case", text()),
            seed=entry.get("seed", whole(0, 2**64 - 1)),
            verdicts=verdicts,
            cache_key=entry.get("cache_key", optional(text()), None),
            image_sha256=entry.get("image_sha256", optional(text()), None),
        )


_ENTRY_FIELDS = {"case", "seed", "cache_key", "image_sha256"}


@dataclass(frozen=True)
class ScoreDelta:
    section: str
    before: Score
    after: Score

    @property
    def delta(self) -> float:
        return self.after.value - self.before.value

    @property
    def gain(self) -> float:
        """The change in the better direction (negative: worse); the raw change for 'neither'."""
        return -self.delta if self.after.better == "lower" else self.delta

    def dropped(self, tolerance: float) -> bool:
        return self.after.gated and self.after.better != "neither" and -self.gain > tolerance + _EPSILON

    def rose(self, tolerance: float) -> bool:
        return self.after.gated and self.after.better != "neither" and self.gain > tolerance + _EPSILON


@dataclass(frozen=True)
class Drift:
    """How one item's verdicts moved from ``before`` to ``after``."""

    status: str  # one of STATUSES
    tolerance: float
    before: ItemScores | None
    after: ItemScores | None
    note: str = ""  # why an item counts as new

    @property
    def deltas(self) -> list[ScoreDelta]:
        """Every score both sides have, judge by judge."""
        if self.before is None or self.after is None:
            return []
        found = []
        for section, after in self.after.verdicts.items():
            before = self.before.verdicts.get(section)
            if before is None:
                continue
            for score in after.scores:
                old = before.score(score.name)
                if old is not None:
                    found.append(ScoreDelta(section, old, score))
        return found

    def delta(self, section: str, name: str) -> float | None:
        return next((d.delta for d in self.deltas if d.section == section and d.after.name == name), None)

    @property
    def flips(self) -> tuple[str, ...]:
        """The judges whose verdict went from pass to fail."""
        if self.before is None or self.after is None:
            return ()
        return tuple(
            verdict.title
            for section, verdict in self.after.verdicts.items()
            if not verdict.passed and section in self.before.verdicts and self.before.verdicts[section].passed
        )

    @property
    def severity(self) -> tuple[int, float]:
        """Sort key, worst first: verdict flips, then the larger drop in a gated score."""
        gains = [d.gain for d in self.deltas if d.after.gated]
        return (0 if self.flips else 1, min(gains) if gains else math.inf)

    def to_json(self, name: str) -> dict[str, Any]:
        deltas: dict[str, dict[str, float]] = {}
        for d in self.deltas:
            deltas.setdefault(d.section, {})[d.after.name] = d.delta
        document = {
            "name": name,
            "status": self.status,
            "tolerance": self.tolerance,
            "note": self.note or None,
            "before": None if self.before is None else self.before.to_json(),
            "deltas": deltas,
            "flips": list(self.flips),
        }
        # The keys this note had before judges were pluggable.
        for key, (section, score) in LEGACY_DELTA_KEYS.items():
            document[key] = deltas.get(section, {}).get(score)
        return document

    def explain(self, name: str) -> str:
        """The table a regressed item prints (a line for the other statuses)."""
        if self.status == "new":
            return f"baseline {name!r}: new item ({self.note})"
        if self.status == "nondeterministic":
            return f"baseline {name!r}: nondeterministic, not a regression: {self.note}"
        before, after = self.before, self.after
        assert before is not None and after is not None
        problems = []
        if self.flips:
            problems.append(" and ".join(self.flips) + " verdict went from pass to fail")
        dropped = [d.after.phrase for d in self.deltas if d.dropped(self.tolerance)]
        if dropped:
            problems.append(f"{' and '.join(dropped)} dropped by more than the tolerance {self.tolerance:g}")
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
            return f"  {what[:22]:22}{cells[0]}{cells[1]}  {shown_delta}{mark}".rstrip()

        def verdict(what: str, old: bool | None, new: bool | None) -> str:
            words = {True: "pass", False: "fail", None: "-"}
            mark = "  <- flipped" if old and new is False else ""
            return f"  {what[:22]:22}{words[old]:>9}{words[new]:>9}{mark}"

        lines = [head + ":", f"  {'':22}{'baseline':>9}{'now':>9}  {'delta':>9}"]
        deltas = {(d.section, d.after.name): d for d in self.deltas}
        for section in ordered_sections({*before.verdicts, *after.verdicts}):
            old_verdict, new_verdict = before.verdicts.get(section), after.verdicts.get(section)
            shown = new_verdict or old_verdict
            assert shown is not None
            for score in shown.scores:
                found = deltas.get((section, score.name))
                old_score = old_verdict.score(score.name) if old_verdict is not None else None
                new_score = new_verdict.score(score.name) if new_verdict is not None else None
                lines.append(
                    row(
                        score.label,
                        old_score.value if old_score is not None else None,
                        new_score.value if new_score is not None else None,
                        found.delta if found is not None else None,
                        found is not None and found.dropped(self.tolerance),
                    )
                )
            lines.append(
                verdict(
                    f"{shown.title} verdict",
                    old_verdict.passed if old_verdict is not None else None,
                    new_verdict.passed if new_verdict is not None else None,
                )
            )
        return "\n".join(lines)


def classify(before: ItemScores | None, after: ItemScores, tolerance: float) -> Drift:
    """Regressed, improved, unchanged (within the tolerance) or new: one rule for baselines and compare."""
    if before is None:
        return Drift("new", tolerance, None, after, note="no baseline entry")
    for section, verdict in after.verdicts.items():
        old = before.verdicts.get(section)
        if old is not None and old.comparable != verdict.comparable:
            return Drift(
                "new",
                tolerance,
                None,
                after,
                note=f"the {verdict.comparable_what} changed since the baseline, so the scores do not compare",
            )
    drift = Drift("unchanged", tolerance, before, after)
    if drift.flips or any(d.dropped(tolerance) for d in drift.deltas):
        status = "regressed"
    elif any(d.rose(tolerance) for d in drift.deltas) or any(
        verdict.passed and section in before.verdicts and not before.verdicts[section].passed
        for section, verdict in after.verdicts.items()
    ):
        status = "improved"
    else:
        return drift
    same_inputs = before.cache_key is not None and before.cache_key == after.cache_key
    same_pixels = before.image_sha256 is not None and before.image_sha256 == after.image_sha256
    if same_inputs and not same_pixels:
        # Everything that decides the pixels is the same, so the move is the pipeline's nondeterminism (a GPU
        # kernel, another batch size), not the prompt's or the model's. With the same pixels it is the judge's.
        pixels = "its pixels differ" if before.image_sha256 and after.image_sha256 else "it was generated again"
        moved = "its verdict changed" if _verdict_changed(before, after) else "its scores moved beyond the tolerance"
        return Drift(
            "nondeterministic",
            tolerance,
            before,
            after,
            note=f"the image's cache key is unchanged (same model, prompt, seed and settings) but {pixels}, and "
            f"{moved} ({status} otherwise)",
        )
    return Drift(status, tolerance, before, after)


def _verdict_changed(before: ItemScores, after: ItemScores) -> bool:
    return any(
        section in before.verdicts and before.verdicts[section].passed != verdict.passed
        for section, verdict in after.verdicts.items()
    )


# ---------------------------------------------------------------------------------------------
# Baseline files on disk.


@dataclass
class BaselineFile:
    """One case file's entries in one baseline."""

    name: str
    file: str  # the case file's path relative to the rootdir, as in its node ids
    entries: dict[str, ItemScores]  # by item_key
    environment: dict[str, str]
    # Rate-gated cases' rates and score summaries, by case id (harness.reports.case_rates).
    cases: dict[str, CaseRate] = field(default_factory=dict)

    def to_text(self) -> str:
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "baseline": self.name,
            "file": self.file,
            "environment": self.environment,
            "items": {key: scores.to_json() for key, scores in self.entries.items()},
        }
        if self.cases:  # absent otherwise: files saved before rates existed stay byte-identical
            document["cases"] = {case: rate.to_json(DIGITS) for case, rate in sorted(self.cases.items())}
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
    parts = [UNSAFE_PATH_CHARS.sub("_", part).lstrip(".") or "_" for part in PurePosixPath(file).parts]
    if parts and len(parts[-1]) > _MAX_FILE_COMPONENT:
        digest = hashlib.sha256(file.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        parts[-1] = f"{parts[-1][:_MAX_FILE_COMPONENT]}-{digest}"
    folder = (root / BASELINES_DIR / name).resolve()
    path = folder.joinpath(*parts[:-1], parts[-1] + ".json").resolve() if parts else folder / "_.json"
    if not path.is_relative_to(folder):
        raise BaselineError(f"refusing to write a baseline outside {folder}: {path}")
    return path


def read_baseline_file(path: Path) -> BaselineFile:
    """One baseline file, read as untrusted JSON (harness.common.json_input); BaselineError in one line otherwise."""
    from harness.common.json_input import (
        Fields,
        JsonInputError,
        ShapeError,
        any_value,
        mapping_of,
        optional,
        read_json,
        text,
    )

    fix = "restore it from version control or save the baseline again with --t2i-save-baseline."
    try:
        fields = Fields(read_json(path, "t2i baseline file"))
        version = fields.get("version", any_value())
        if version != FORMAT_VERSION:
            raise ShapeError("version", str(FORMAT_VERSION), version)
        entries = {}
        for key, value in fields.get("items", mapping_of(any_value())).items():
            scores = ItemScores.from_json(value, f"items.{key}")
            if key != item_key(scores.case, scores.seed):
                raise ShapeError(f"items.{key}", f"an entry named {item_key(scores.case, scores.seed)!r}", key)
            entries[key] = scores
        environment: dict[str, str] | None = fields.get("environment", optional(mapping_of(text())), None)
        cases = {}
        for key, value in fields.get("cases", mapping_of(any_value()), {}).items():
            rate = CaseRate.from_json(value, f"cases.{key}")
            if key != rate.case:
                raise ShapeError(f"cases.{key}", f"an entry named {rate.case!r}", key)
            cases[key] = rate
        return BaselineFile(
            fields.get("baseline", text()), fields.get("file", text()), entries, environment or {}, cases
        )
    except JsonInputError as exc:
        raise BaselineError(f"{exc}; {fix}") from None
    except ShapeError as exc:
        raise BaselineError(f"{path}: not a readable t2i baseline file: {exc}; {fix}") from None


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
    A rate-gated case that ran also stores its rate and score summaries (replacing the old ones).
    """
    from harness.common.json_input import ShapeError
    from harness.reports.records import Record, parse_record

    by_file: dict[str, dict[str, ItemScores]] = {}
    parsed: dict[str, list[Record]] = {}
    for record in records:
        try:
            typed = parse_record(record)
        except ShapeError:  # a record this run made cannot be of the wrong shape; never save a guess
            continue
        parsed.setdefault(typed.file, []).append(typed)
        scores = typed.scores()
        if scores is not None:
            by_file.setdefault(typed.file, {})[item_key(scores.case, scores.seed)] = scores
    added = updated = removed = 0
    for file, fresh in sorted(by_file.items()):
        path = baseline_path(root, name, file)
        old_file = read_baseline_file(path) if path.is_file() else None
        old = old_file.entries if old_file is not None else {}
        keep = case_seeds.get(file)
        merged = {key: value for key, value in old.items() if keep is None or key in keep}
        removed += len(old) - len(merged)
        for key, scores in fresh.items():
            if key in merged:
                updated += 1
            else:
                added += 1
            merged[key] = scores
        ran = {record.case for record in parsed[file]}
        kept_cases = None if keep is None else {key.rsplit("[", 1)[0] for key in keep}
        cases = {
            case: rate
            for case, rate in (old_file.cases if old_file is not None else {}).items()
            if case not in ran and (kept_cases is None or case in kept_cases)
        }
        cases.update({rate.case: rate for rate in case_rates(parsed[file]) if rate.min_pass_rate is not None})
        atomic_write_text(path, BaselineFile(name, file, dict(sorted(merged.items())), environment, cases).to_text())
    return SaveSummary(root / BASELINES_DIR / name, len(by_file), added, updated, removed)
