"""Human verdicts from review (``python -m harness review``): baselines/reviewed-labels.json.

One entry per case file, case, seed, judge and image cache key: what a person decided about that judge's
verdict on that image. ``verdict`` is the human's (pass or fail), ``judge_verdict`` what the judge said when
they looked; ``decision`` is the button that wrote it:

- ``accept``: the item's current scores became its baseline entry; the person agreed with every judge.
- ``reject``: a real regression; the person agreed with every judge (the baseline keeps its old entry).
- ``judge_wrong``: the person says this judge's verdict is wrong, so theirs is the opposite.

The file is sorted and stable (entries ordered by their key, keys sorted, two-space indent), so that a review
reads as a small diff in code review. A later run on the same image (same cache key) shows the human verdict
next to the judge's, and counts how often each judge agreed with people.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.common.atomic import atomic_write_text

if TYPE_CHECKING:
    from harness.judging.judge import Verdict

LABELS_FILE = "reviewed-labels.json"
FORMAT_VERSION = 1
VERDICTS = ("pass", "fail")
DECISIONS = ("accept", "reject", "judge_wrong")
MAX_TEXT = 1000  # any one field: a name or an id, never a document

LabelKey = tuple[str, str, int, str, str]  # (case file, case id, seed, judge section, image cache key)


class LabelsError(Exception):
    """A labels file that cannot be read; the message names the file and what is wrong, and how to fix it."""


@dataclass(frozen=True)
class HumanLabel:
    file: str  # the case file, relative to the rootdir, as in node ids
    case: str
    seed: int
    judge: str  # the judge's section in the case file (clip, resnet, vqa, ...)
    cache_key: str  # the image's: a label belongs to those exact inputs
    verdict: str  # the human's: "pass" or "fail"
    judge_verdict: str  # the judge's when the person looked
    decision: str  # one of DECISIONS
    by: str
    at: str  # UTC, ISO 8601, seconds
    # A digest of the judge's check when the person looked (harness.judging.formats.comparison_digest: CLIP's labels,
    # say). An image keeps its cache key when only its check is edited; a label on the old check must not decide
    # the new one. None: the judge's verdicts have no comparison key.
    check: str | None = None

    @property
    def key(self) -> LabelKey:
        return (self.file, self.case, self.seed, self.judge, self.cache_key)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def applies_to(self, verdict: Verdict) -> bool:
        """Whether this label was given on the check that made ``verdict`` (same comparison key, or none kept)."""
        from harness.judging.formats import comparison_digest

        return self.check is None or self.check == comparison_digest(verdict.comparable)


def labels_path(root: Path) -> Path:
    """Where the labels live: next to the baselines (baselines/NAME/ folders) under ``root``."""
    from harness.reports.baseline import BASELINES_DIR

    return root / BASELINES_DIR / LABELS_FILE


def read_labels(path: Path) -> dict[LabelKey, HumanLabel]:
    """The labels in ``path`` by key; none when the file does not exist yet. LabelsError when it cannot be read."""
    from harness.common.json_input import (
        Fields,
        JsonInputError,
        ShapeError,
        any_value,
        list_of,
        optional,
        read_json,
        text,
        whole,
    )

    if not path.exists():
        return {}
    fix = f"fix or delete {path} (it is written by `python -m harness review`; git can restore it)"
    try:
        document = Fields(read_json(path, "reviewed-labels file"))
        version = document.get("version", any_value())
        if version != FORMAT_VERSION:
            raise ShapeError("version", str(FORMAT_VERSION), version)
        labels: dict[LabelKey, HumanLabel] = {}
        for index, raw in enumerate(document.get("labels", list_of(any_value()))):
            entry = Fields(raw, f"labels[{index}]")

            def one_of(name: str, allowed: tuple[str, ...], entry: Fields = entry) -> str:
                value = entry.get(name, text())
                if value not in allowed:
                    raise ShapeError(entry.field(name), " or ".join(map(repr, allowed)), value)
                return value

            def short(name: str, entry: Fields = entry) -> str:
                value = entry.get(name, text())
                if not value or len(value) > MAX_TEXT:
                    raise ShapeError(entry.field(name), f"a text of 1 to {MAX_TEXT} characters", value)
                return value

            label = HumanLabel(
                file=short("file"),
                case=short("case"),
                seed=entry.get("seed", whole(0, 2**64 - 1)),
                judge=short("judge"),
                cache_key=short("cache_key"),
                verdict=one_of("verdict", VERDICTS),
                judge_verdict=one_of("judge_verdict", VERDICTS),
                decision=one_of("decision", DECISIONS),
                by=short("by"),
                at=short("at"),
                check=entry.get("check", optional(text()), None),
            )
            labels[label.key] = label  # a hand-merged duplicate: the later entry wins, as a later review would
        return labels
    except JsonInputError as exc:
        raise LabelsError(f"{exc}; {fix}") from None
    except ShapeError as exc:
        raise LabelsError(f"{path}: not a readable reviewed-labels file: {exc}; {fix}") from None


def labels_text(labels: Iterable[HumanLabel]) -> str:
    # "check" only where there is one: files stay as short as the labels they hold.
    entries = [
        {k: v for k, v in asdict(label).items() if v is not None or k != "check"}
        for label in sorted(labels, key=lambda label: label.key)
    ]
    return (
        json.dumps({"version": FORMAT_VERSION, "labels": entries}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def record_labels(path: Path, new: Iterable[HumanLabel], forget: Iterable[LabelKey] = ()) -> dict[LabelKey, HumanLabel]:
    """Add ``new`` to the file (a label with the same key replaces the old one) and drop the ``forget`` keys (a
    person took their verdict back), written atomically; the labels now in the file."""
    labels = read_labels(path)
    for key in forget:
        labels.pop(key, None)
    labels.update((label.key, label) for label in new)
    atomic_write_text(path, labels_text(labels.values()))
    return labels


ImageKey = tuple[str, str, int, str]  # (case file, case id, seed, image cache key)


def by_image(labels: Iterable[HumanLabel]) -> dict[ImageKey, dict[str, HumanLabel]]:
    """The labels grouped by image: a run looks up each record's (file, case, seed, cache_key) once."""
    grouped: dict[ImageKey, dict[str, HumanLabel]] = {}
    for label in labels:
        grouped.setdefault((label.file, label.case, label.seed, label.cache_key), {})[label.judge] = label
    return grouped


def reviewer(cwd: Path | None = None) -> str:
    """Who is reviewing: git's user.name and user.email, else $GIT_AUTHOR_NAME / $USER; "unknown" when none is set."""
    name = os.environ.get("GIT_AUTHOR_NAME") or _git_config("user.name", cwd)
    email = os.environ.get("GIT_AUTHOR_EMAIL") or _git_config("user.email", cwd)
    name = name or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"
    return (f"{name} <{email}>" if email else name)[:MAX_TEXT]


def _git_config(key: str, cwd: Path | None) -> str:
    try:
        done = subprocess.run(
            ["git", "config", "--get", key], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
