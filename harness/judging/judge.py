"""What a judge is: the public interface of every check a case declares (CLIP and ResNet-50 included).

A judge owns one section of a case (``clip:``, ``resnet:``, ``brightness:``...): it validates that section,
names the session fixture that holds its model, computes one feature vector per image for a whole batch in
one forward (the score cache keeps these), and turns one image's vector into a :class:`Verdict` for the
case's check. Everything else (generating, batching, caching, results.json, the report, baselines and the
compare page) works on verdicts alone and never names a judge. Register judges with the
``pytest_t2i_judges`` hook (harness.pytest_plugin.hookspecs); see the README's "Write your own judge".
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from PIL import Image

    from harness.cases.case_file import Case, Problem, SectionReader

# A section names a YAML key, a results.json key, a CSS class and a baseline field.
SECTION_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}\Z")
SCORE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}\Z")
DIRECTIONS = ("higher", "lower", "neither")

CheckT = TypeVar("CheckT")
ModelT = TypeVar("ModelT")


@dataclass(frozen=True)
class Score:
    """One named number of a verdict: shown in the report, kept in baselines, compared between runs."""

    name: str  # unique within the judge: [a-z][a-z0-9_]*
    value: float
    label: str  # how tables name it: "CLIP probability"
    better: str = "higher"  # "higher", "lower" or "neither": which way is an improvement
    # Compared with the baseline tolerance (--t2i-tolerance): a move the wrong way by more than it regresses
    # the item. Only for scores on a 0-1 scale, as the tolerance is.
    gated: bool = False
    what: str = ""  # how a sentence names it ("intended-label probability"); the label if empty

    def __post_init__(self) -> None:
        if not SCORE_NAME_PATTERN.match(self.name):
            raise ValueError(f"score name {self.name!r}: use lowercase letters, digits and '_', starting with a letter")
        if self.better not in DIRECTIONS:
            raise ValueError(f"score {self.name!r}: better={self.better!r}, expected one of {', '.join(DIRECTIONS)}")

    @property
    def phrase(self) -> str:
        return self.what or self.label


@dataclass(frozen=True)
class TableRow:
    cells: tuple[str, ...]
    marks: tuple[str, ...] = ()  # words for the row's CSS classes (t2i-<mark>): "intended", "picked"


@dataclass(frozen=True)
class Table:
    """The cell a judge adds to the report row: plain text in rows, escaped by the one renderer."""

    rows: tuple[TableRow, ...] = ()
    note: str = ""  # a line under the rows


@dataclass(frozen=True)
class Verdict:
    """A judge's answer for one image: computed in a run, or read back from results.json or a baseline."""

    title: str  # how tables and messages name the judge: "CLIP"
    passed: bool
    scores: tuple[Score, ...] = ()
    table: Table = field(default_factory=Table)
    explanation: str = ""  # the short table a failing item prints
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able: results.json keeps it as it is
    # Scores compare with a baseline's only under an equal key (CLIP: its labels); what the key stands for.
    comparable: str | None = None
    comparable_what: str = "check"

    def score(self, name: str) -> Score | None:
        return next((s for s in self.scores if s.name == name), None)


class Judge(ABC, Generic[CheckT, ModelT]):
    """A check that cases declare in their own section. Subclass it, then register an instance.

    Class attributes say who the judge is; the methods are called by the harness:

    - ``parse(section)`` validates the case's section (problems go through ``section.problem``) and returns the
      check: a frozen, hashable value (a frozen dataclass), or None when the section has problems.
    - ``features(model, images)`` runs the model once on a batch: one row of floats per image. The score cache
      keeps the rows when ``cache_identity`` says what the model is; editing a check never reruns it.
    - ``verdict(model, check, row)`` judges one image from its row, for this case's check.
    """

    section: ClassVar[str]  # the case-file key, also results.json's and the baseline's
    title: ClassVar[str]  # how messages name it: "CLIP", "ResNet-50"
    column: ClassVar[str] = ""  # the report column's header; the title if empty
    fixture: ClassVar[str]  # the session fixture that returns the model passed to features() and verdict()
    keys: ClassVar[tuple[str, ...]] = ()  # the keys its section accepts (for near-miss suggestions)
    required: ClassVar[bool] = False  # every case must have the section
    # A section written as a list stands for a mapping with the list under this key (`objects: [...]` is
    # `objects: {expect: [...]}`); empty: the section must be a mapping.
    list_key: ClassVar[str] = ""
    missing_hint: ClassVar[str] = ""  # for a required section: what to add

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        section = cls.__dict__.get("section")
        if section is not None and not SECTION_PATTERN.match(section):
            raise TypeError(f"{cls.__name__}.section = {section!r}: use lowercase letters, digits and '_'")

    @property
    def column_title(self) -> str:
        return self.column or self.title

    @abstractmethod
    def parse(self, section: SectionReader) -> CheckT | None:
        """The check the case's section asks for; None if ``section.problem`` was called."""

    def problems(self, check: CheckT, case: Case, model: ModelT) -> list[Problem]:
        """Problems of the case file found with the model loaded (e.g. a label its text encoder cannot read).

        Such a case fails without generating its image, with these problems as ``path:line`` lines.
        """
        return []

    def problems_without_model(self, check: CheckT, case: Case, config: Any) -> list[Problem]:
        """The same problems, in check mode (``--t2i-check``): no model is loaded there; [] if none can be found."""
        return []

    def check_mode_note(self) -> str | None:
        """What check mode's footer says about ``problems_without_model`` (e.g. which tokenizer it used)."""
        return None

    def cache_identity(self, model: ModelT) -> dict[str, str] | None:
        """What makes ``features`` what they are (weights, revision, preprocessing, dtype, device, versions).

        Equal identities must mean equal rows for equal pixels. None: never cache this judge's rows.
        """
        return None

    def feature_length(self, model: ModelT) -> int | None:
        """The length of one row, when known before computing it (the score cache checks it).

        A judge with a ``query`` is asked ``feature_length(model, query)``: its rows' length may depend on it.
        """
        return None

    def query(self, check: CheckT) -> Any:
        """What of the case's check the rows depend on, for a judge whose forward reads it (a vision-language
        model's questions, a detector's object names); None (the default): the rows depend on the image alone.

        A JSON-able value (strings, numbers, lists). With one, ``features`` is called as
        ``features(model, images, queries)`` with each image's query, the score cache keeps a row per image
        and query, and rows may differ in length between images.
        """
        return None

    @property
    def has_query(self) -> bool:
        return type(self).query is not Judge.query

    @abstractmethod
    def features(self, model: ModelT, images: Sequence[Image.Image]) -> Any:
        """One row of floats per image, in one forward: a 2-D torch tensor or numpy array, or a list of lists.

        A judge with a ``query`` takes a third argument, ``queries``: one per image, in order.
        """

    @abstractmethod
    def verdict(self, model: ModelT, check: CheckT, row: Any) -> Verdict:
        """The verdict for one image, from its row (a 1-D float32 numpy array) and the case's check."""
