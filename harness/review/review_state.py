"""What a review works on: a run's records against a baseline, the human verdicts on them, and the decisions.

A review unit is what Accept and Reject apply to: one seed of a case, or a whole rate-gated case (its rate is
one baseline entry, so its seeds are accepted together). "Judge is wrong" applies to one judge on one image.

Accept writes the unit's baseline entries with the same function ``--t2i-save-baseline`` uses, fed the unit's
records as results.json holds them, so the file reads exactly as a run saving that baseline would write it;
every decision also writes its human verdicts to the reviewed-labels file. Both writes are atomic, and nothing
else on disk changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.common.json_input import Fields, JsonInputError, ShapeError, boolean, list_of, obj, text
from harness.judging.formats import comparison_digest, ordered_sections
from harness.reports.baseline import (
    BASELINES_DIR,
    DEFAULT_TOLERANCE,
    BaselineError,
    BaselineFile,
    Drift,
    ItemScores,
    available_names,
    baseline_path,
    classify,
    item_key,
    read_baseline_dir,
    read_baseline_file,
    save_baseline,
    validate_name,
)
from harness.reports.case_rates import CaseDrift, CaseRate, case_rate, compare_rates, seed_result
from harness.reports.records import Record, RunResults, read_results
from harness.reports.results import RESULTS_FILE
from harness.reports.reviewed_labels import (
    HumanLabel,
    LabelKey,
    LabelsError,
    labels_path,
    now,
    read_labels,
    record_labels,
)

if TYPE_CHECKING:
    from PIL.Image import Image

ACTIONS = ("accept", "reject", "judge_wrong")
MAX_DECISIONS = 100_000  # one post: "accept all shown" on a very large run, still a bounded body


class ReviewError(Exception):
    """Something the person starting the review can fix (a run dir, a baseline name); one paragraph."""


class DecisionError(ValueError):
    """A posted decision that is not one: the page never sends it, so the request is refused whole."""


@dataclass
class ReviewItem:
    """One record (a seed's image) and how it stands against the baseline and the human verdicts."""

    index: int  # the record's index in results.json: how the page's URLs name it
    record: Record
    before: ItemScores | None
    drift: Drift | None  # None when the record was not scored
    labels: dict[str, HumanLabel] = field(default_factory=dict)  # human verdicts on this image, by judge
    # The cache key of the baseline's image, when it is another image than this run's and the cache has it.
    before_image: str | None = None

    @property
    def status(self) -> str:
        return self.drift.status if self.drift is not None else "not scored"

    @property
    def failed(self) -> bool:
        return self.record.outcome in ("failed", "error")


@dataclass
class ReviewUnit:
    uid: str  # the pytest node id: a seed's, or a rate-gated case's
    file: str
    case: str
    items: list[ReviewItem]
    gated: bool
    tolerance: float
    rate: CaseRate | None = None  # gated units only
    case_drift: CaseDrift | None = None

    @property
    def status(self) -> str:
        if self.gated:
            return self.case_drift.status if self.case_drift is not None else "not scored"
        return self.items[0].status

    @property
    def failed(self) -> bool:
        if self.gated:
            return self.items[0].record.case_outcome in ("failed", "error")
        return self.items[0].failed

    @property
    def decision(self) -> str | None:
        """'reject' or 'accept' when a person decided on these images (this run's or the same inputs' before)."""
        decisions = {label.decision for item in self.items for label in item.labels.values()}
        return next((d for d in ("reject", "accept") if d in decisions), None)


@dataclass(frozen=True)
class Decision:
    action: str  # one of ACTIONS
    unit: str = ""  # accept, reject
    item: str = ""  # judge_wrong: the record's id
    judge: str = ""  # judge_wrong: the section
    wrong: bool = True  # judge_wrong: False takes the person's "judge is wrong" back


def parse_decisions(document: Any) -> list[Decision]:
    """The decisions of one post: {"decisions": [{"action": ..., ...}, ...]}; DecisionError names the problem."""

    def one(entry: Fields) -> Decision:
        known = {"action", "unit", "item", "judge", "wrong"}
        extra = sorted(set(entry.data) - known)
        if extra:
            raise ShapeError(entry.field(extra[0]), "no such field", entry.data[extra[0]])
        action = entry.get("action", text())
        if action not in ACTIONS:
            raise ShapeError(entry.field("action"), " or ".join(ACTIONS), action)
        if action == "judge_wrong":
            return Decision(
                action,
                item=entry.get("item", text()),
                judge=entry.get("judge", text()),
                wrong=entry.get("wrong", boolean(), True),
            )
        return Decision(action, unit=entry.get("unit", text()))

    try:
        decisions = Fields(document).get("decisions", list_of(obj(one, "a decision object"), min_length=1))
    except ShapeError as exc:
        raise DecisionError(str(exc)) from None
    if len(decisions) > MAX_DECISIONS:
        raise DecisionError(f"{len(decisions)} decisions in one request; at most {MAX_DECISIONS}")
    return list(decisions)


class ReviewState:
    """The run under review. Decisions are applied one request at a time (a lock), each written atomically."""

    def __init__(
        self,
        root: Path,
        run: RunResults,
        name: str,
        baseline: dict[str, BaselineFile],
        labels_file: Path,
        labels: dict[LabelKey, HumanLabel],
        tolerance: float,
        reviewer: str,
        cache_dir: Path | None = None,
        images_from: RunResults | None = None,
    ) -> None:
        from harness.generation.image_cache import ImageCache

        self.root = root
        # The baseline's images: a baseline keeps scores only, but its entries name their images' cache keys, found
        # in the image cache or in another run (the one the baseline was saved from, say) that made the same image.
        self.cache = ImageCache(cache_dir) if cache_dir is not None else None
        self.images_from = images_from
        self._other_images = (
            {r.cache_key: r.image for _, r in images_from.records if r.cache_key and r.image} if images_from else {}
        )
        self.run = run
        self.name = name
        self.baseline = baseline
        self.labels_file = labels_file
        self.labels = labels
        self.default_tolerance = tolerance
        self.reviewer = reviewer
        self.lock = threading.Lock()
        self.units: list[ReviewUnit] = []
        self._known_images: set[str] = set()
        self._units_by_uid: dict[str, ReviewUnit] = {}
        self._unit_of_item: dict[str, ReviewUnit] = {}
        self.items_by_index: dict[int, ReviewItem] = {}
        self.items_by_id: dict[str, ReviewItem] = {}
        self._build_units()

    # -- reading ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        run_dir: Path,
        root: Path,
        name: str | None,
        tolerance: float | None,
        reviewer: str,
        cache_dir: Path | None = None,
        images_from: Path | None = None,
    ) -> ReviewState:
        results = run_dir / RESULTS_FILE if run_dir.is_dir() else run_dir
        if not results.is_file():
            raise ReviewError(
                f"{run_dir}: no {RESULTS_FILE} here. Give the report dir of a run (the folder holding "
                "report.html, results.json and images/; `reports` by default), after running pytest."
            )
        try:
            run = read_results(results)
        except JsonInputError as exc:
            raise ReviewError(f"{exc}. Run pytest again to write a new one.") from None
        other = None
        if images_from is not None:
            found = images_from / RESULTS_FILE if images_from.is_dir() else images_from
            try:
                other = read_results(found)
            except JsonInputError as exc:
                raise ReviewError(
                    f"--images-from: {exc}. Give the report dir of the run the baseline came from."
                ) from None
        name = cls._baseline_name(root, run, name)
        folder = root / BASELINES_DIR / name
        try:
            baseline = read_baseline_dir(folder) if folder.is_dir() else {}
            labels_file = labels_path(root)
            labels = read_labels(labels_file)
        except (BaselineError, LabelsError) as exc:
            raise ReviewError(str(exc)) from None
        return cls(
            root,
            run,
            name,
            baseline,
            labels_file,
            labels,
            DEFAULT_TOLERANCE if tolerance is None else tolerance,
            reviewer,
            cache_dir,
            other,
        )

    @staticmethod
    def _baseline_name(root: Path, run: RunResults, name: str | None) -> str:
        where = "--baseline"
        if name is not None:
            try:
                validate_name(name, where)
            except BaselineError as exc:
                raise ReviewError(str(exc)) from None
            return name
        used = sorted({record.baseline.name for _, record in run.records if record.baseline is not None})
        if len(used) == 1:
            return used[0]
        saved = available_names(root)
        if len(saved) == 1 and not used:
            return saved[0]
        choices = ", ".join(used or saved) or "none yet"
        raise ReviewError(
            f"which baseline should this review write to? The run {run.path} "
            + ("was compared with several" if used else "was not compared with one")
            + f" (baselines under {root / BASELINES_DIR}: {choices}). Pass --baseline NAME (a new name starts a "
            "new baseline)."
        )

    def _build_units(self) -> None:
        self.units, self.items_by_index, self.items_by_id = [], {}, {}
        gated: dict[tuple[str, str], ReviewUnit] = {}
        for index, record in self.run.records:
            item = self._item(index, record)
            self.items_by_index[index] = item
            self.items_by_id[record.id] = item
            tolerance = self._tolerance_of(record)
            if record.min_pass_rate is None:
                self.units.append(ReviewUnit(record.id, record.file, record.case, [item], False, tolerance))
                continue
            key = (record.file, record.case)
            if key not in gated:
                uid = record.id.rsplit("[", 1)[0]  # file::case[seed=N] -> the case item's node id
                gated[key] = ReviewUnit(uid, record.file, record.case, [], True, tolerance)
                self.units.append(gated[key])
            gated[key].items.append(item)
        for unit in gated.values():
            self._rate(unit)
        self._known_images = {item.before_image for item in self.items_by_index.values() if item.before_image}
        self._units_by_uid = {unit.uid: unit for unit in self.units}
        self._unit_of_item = {item.record.id: unit for unit in self.units for item in unit.items}

    def _item(self, index: int, record: Record) -> ReviewItem:
        scores = record.scores()
        baseline = self.baseline.get(record.file)
        before = None if baseline is None else baseline.entries.get(item_key(record.case, record.seed))
        drift = None if scores is None else classify(before, scores, self._tolerance_of(record))
        labels = {} if record.cache_key is None else self._labels_on(record)
        return ReviewItem(index, record, before, drift, labels, self._before_image(record, before))

    def _labels_on(self, record: Record) -> dict[str, HumanLabel]:
        return {
            section: label
            for section, verdict in record.verdicts.items()
            if (label := self.labels.get((record.file, record.case, record.seed, section, str(record.cache_key))))
            and label.applies_to(verdict)
        }

    def _rate(self, unit: ReviewUnit) -> None:
        results = [result for item in unit.items if (result := seed_result(item.record)) is not None]
        unit.rate = case_rate(unit.file, unit.case, results, unit.items[0].record.min_pass_rate)
        baseline = self.baseline.get(unit.file)
        before = None if baseline is None else baseline.cases.get(unit.case)
        unit.case_drift = compare_rates(before, unit.rate, unit.tolerance)

    def _tolerance_of(self, record: Record) -> float:
        # The run's own comparison knew the case's `tolerance:`; without one, the review's default.
        noted = record.raw.get("baseline")
        value = noted.get("tolerance") if isinstance(noted, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
        return self.default_tolerance

    def _before_image(self, record: Record, before: ItemScores | None) -> str | None:
        if before is None or before.cache_key in (None, record.cache_key):
            return None
        key = str(before.cache_key)
        if key in self._other_images:
            return key
        if self.cache is None:
            return None
        try:
            path = self.cache.path_for(key)
        except ValueError:  # a baseline file's cache_key is untrusted text: only a hex digest names a file
            return None
        return key if path.is_file() else None

    def baseline_image(self, key: str) -> Image | None:
        """A baseline image the page shows (no other key): from the other run (--images-from), else the cache."""
        if key not in self._known_images:
            return None
        if key in self._other_images and self.images_from is not None:
            from harness.reports.run_images import ImageRefused, run_image

            try:
                return run_image(self.images_from.run_dir, self._other_images[key]).pixels
            except (ImageRefused, OSError):
                return None
        return self.cache.peek(key) if self.cache is not None else None

    def baseline_image_source(self, key: str) -> str:
        return (
            f"from {self.images_from.run_dir}"
            if key in self._other_images and self.images_from
            else "from the image cache"
        )

    def unit(self, uid: str) -> ReviewUnit:
        found = self._units_by_uid.get(uid)
        if found is None:
            raise DecisionError(f"no review unit {uid!r} in this run")
        return found

    # -- deciding -----------------------------------------------------------------------------

    def apply(self, decisions: Iterable[Decision]) -> list[ReviewUnit]:
        """Apply every decision of one request (validated first: a bad one changes nothing); the units changed."""
        decisions = list(decisions)
        with self.lock:
            plans = [self._plan(decision) for decision in decisions]  # raises DecisionError before any write
            accepted = [unit for decision, unit in plans if decision.action == "accept"]
            new_labels: dict[LabelKey, HumanLabel] = {}
            forget: set[LabelKey] = set()
            for decision, unit in plans:
                if decision.action == "judge_wrong":
                    item = self.items_by_id[decision.item]
                    key = self._label_key(item, decision.judge)
                    if decision.wrong:
                        new_labels[key] = self._label(item, decision.judge, "judge_wrong")
                        forget.discard(key)
                    else:
                        forget.add(key)
                        new_labels.pop(key, None)
                    continue
                for item in unit.items:
                    for section in item.record.verdicts if item.record.cache_key is not None else ():
                        key = self._label_key(item, section)
                        kept = new_labels.get(key) or self.labels.get(key)
                        verdict = item.record.verdicts[section]
                        if kept and kept.decision == "judge_wrong" and key not in forget and kept.applies_to(verdict):
                            continue  # the person's "judge is wrong" outlives their accept or reject
                        new_labels[key] = self._label(item, section, decision.action)
                        forget.discard(key)
            self._accept(accepted)
            if new_labels or forget:
                self.labels = record_labels(self.labels_file, new_labels.values(), forget=forget)
            changed = {unit.uid: unit for _, unit in plans}
            self._build_units()
            return [self.unit(uid) for uid in changed]

    def _plan(self, decision: Decision) -> tuple[Decision, ReviewUnit]:
        if decision.action != "judge_wrong":
            unit = self.unit(decision.unit)
            if decision.action == "accept" and unit.status == "not scored":
                raise DecisionError(f"{unit.uid}: nothing to accept, the item was not scored")
            return decision, unit
        item = self.items_by_id.get(decision.item)
        if item is None:
            raise DecisionError(f"no item {decision.item!r} in this run")
        if decision.judge not in item.record.verdicts:
            judges = ", ".join(item.record.verdicts) or "none"
            raise DecisionError(f"{decision.item}: no verdict of judge {decision.judge!r} (it has: {judges})")
        if item.record.cache_key is None:
            raise DecisionError(f"{decision.item}: its image has no cache key, so a human verdict could not be kept")
        return decision, self._unit_of_item[decision.item]

    def _accept(self, units: list[ReviewUnit]) -> None:
        if not units:
            return
        records = [item.record.raw for unit in units for item in unit.items]
        files = {unit.file for unit in units}
        # No case file is read: entries the run does not touch stay as they are (None = keep them all).
        save_baseline(self.root, self.name, records, self.run.environment, dict.fromkeys(files))
        for file in files:
            self.baseline[file] = read_baseline_file(baseline_path(self.root, self.name, file))

    def _label_key(self, item: ReviewItem, section: str) -> LabelKey:
        record = item.record
        return (record.file, record.case, record.seed, section, str(record.cache_key))

    def _label(self, item: ReviewItem, section: str, decision: str) -> HumanLabel:
        record = item.record
        verdict = record.verdicts[section]
        judge_verdict = "pass" if verdict.passed else "fail"
        human = judge_verdict if decision != "judge_wrong" else ("fail" if judge_verdict == "pass" else "pass")
        return HumanLabel(
            record.file,
            record.case,
            record.seed,
            section,
            str(record.cache_key),
            human,
            judge_verdict,
            decision,
            self.reviewer,
            now(),
            comparison_digest(verdict.comparable),
        )


def unit_sections(unit: ReviewUnit) -> list[str]:
    return ordered_sections({section for item in unit.items for section in item.record.verdicts})
