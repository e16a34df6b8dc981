"""results.json read back: each record checked against one typed structure before a page shows or compares it.

The report, ``merge`` and ``compare`` all read records through ``parse_record`` (a record made by this
run or one from a file handed to a command): a record of the wrong shape is refused with a message naming
the file, its index and id, the field, what was expected and what is there; the other records go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.common.json_input import (
    Fields,
    JsonInputError,
    ShapeError,
    boolean,
    list_of,
    mapping_of,
    number,
    obj,
    optional,
    read_json,
    shown,
    text,
    whole,
)
from harness.reports.baseline import STATUSES
from harness.reports.human_verdicts import HumanNote, notes_from_json
from harness.reports.results import FORMAT_VERSION

if TYPE_CHECKING:
    from harness.judging.judge import Verdict
    from harness.reports.baseline import ItemScores

SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes 64 bits


@dataclass(frozen=True)
class BaselineNote:
    """What --t2i-baseline said about the record (the rest of that entry is not read back)."""

    name: str
    status: str  # one of STATUSES


@dataclass(frozen=True)
class Record:
    """One item of a run, as results.json holds it (harness.reports.results.ItemRecord writes it)."""

    id: str
    case: str
    file: str
    line: int
    seed: int
    prompt: str
    negative_prompt: str | None
    steps: int
    guidance_scale: float
    width: int | None
    height: int | None
    tags: tuple[str, ...]
    outcome: str
    image: str | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # by judge section (harness.judging.formats)
    fault: str | None = None
    cached: bool = False
    cache_key: str | None = None
    image_sha256: str | None = None
    min_pass_rate: float | None = None
    case_outcome: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    baseline: BaselineNote | None = None
    # Human verdicts from review, by judge section (harness.reports.human_verdicts); None when the image has none,
    # and in results.json files written before human verdicts existed.
    human: dict[str, HumanNote] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as read, checked

    @property
    def key(self) -> tuple[str, str, int]:
        """(case file, case id, seed): what a comparison pairs records by."""
        return (self.file, self.case, self.seed)

    def scores(self) -> ItemScores | None:
        from harness.reports.baseline import ItemScores

        return ItemScores.of(self.case, self.seed, self.cache_key, self.verdicts, self.image_sha256)

    def with_image(self, image: str | None) -> Record:
        return replace(self, image=image, raw={**self.raw, "image": image})


def _baseline(fields: Fields) -> BaselineNote:
    status = fields.get("status", text())
    if status not in STATUSES:
        raise ShapeError(fields.field("status"), "one of " + ", ".join(STATUSES), status)
    return BaselineNote(fields.get("name", text()), status)


def parse_record(raw: Any) -> Record:
    """The typed record, or ShapeError naming the first field that is not what ItemRecord writes."""
    fields = Fields(raw)
    size = optional(whole(1, 2**16))
    return Record(
        id=fields.get("id", text()),
        case=fields.get("case", text()),
        file=fields.get("file", text()),
        line=fields.get("line", whole(0, 2**31)),
        seed=fields.get("seed", whole(0, SEED_MAX)),
        prompt=fields.get("prompt", text()),
        negative_prompt=fields.get("negative_prompt", optional(text())),
        steps=fields.get("steps", whole(1, 2**31)),
        guidance_scale=fields.get("guidance_scale", number()),
        width=fields.get("width", size),
        height=fields.get("height", size),
        tags=fields.get("tags", list_of(text())),
        outcome=fields.get("outcome", text()),
        image=fields.get("image", optional(text()), None),
        verdicts=_verdicts(fields),
        fault=fields.get("fault", optional(text()), None),
        cached=fields.get("cached", boolean(), False),
        cache_key=fields.get("cache_key", optional(text()), None),
        image_sha256=fields.get("image_sha256", optional(text()), None),
        min_pass_rate=fields.get("min_pass_rate", optional(number(0, 1)), None),
        case_outcome=fields.get("case_outcome", optional(text()), None),
        timings=fields.get("timings", mapping_of(number(0)), {}),
        warnings=fields.get("warnings", list_of(text()), ()),
        baseline=fields.get("baseline", optional(obj(_baseline, "an object with name and status")), None),
        human=fields.get("human", notes_from_json, None),
        raw=dict(raw),
    )


def _verdicts(fields: Fields) -> dict[str, Verdict]:
    """Every judge section of the record (any other key naming a section), each checked by its format."""
    from harness.judging.formats import is_section_name, ordered_sections, verdict_from_record

    data = fields.data
    own = _record_fields()
    sections = [key for key in data if key not in own and is_section_name(key) and data[key] is not None]
    return {
        section: verdict_from_record(section, data[section], fields.field(section))
        for section in ordered_sections(sections)
    }


def _record_fields() -> set[str]:
    """A record's own keys: every other key of a record is a judge's section."""
    return {f.name for f in dataclass_fields(Record)} - {"verdicts", "raw"}


# ---------------------------------------------------------------------------------------------
# A whole results.json, and what was refused from it.


@dataclass(frozen=True)
class Refusal:
    """A part of an input that was left out (a record) or shown without something (its image)."""

    source: str  # the file
    part: str  # e.g. "record 3 (id 'a.yaml::x[seed=0]')"
    problem: str
    consequence: str  # e.g. "the record is left out"

    def __str__(self) -> str:
        return f"{self.source}: {self.part}: {self.problem}; {self.consequence}"


def record_part(index: int, raw: Any) -> str:
    """How a message names a record: its index in "results", and its id when it has one."""
    record_id = raw.get("id") if isinstance(raw, dict) else None
    return f"record {index}" + (f" (id {shown(record_id)})" if isinstance(record_id, str) else "")


@dataclass
class RunResults:
    path: Path  # the results.json
    environment: dict[str, str]
    records: list[tuple[int, Record]]  # (index in "results", record), the valid ones, in file order
    refusals: list[Refusal]

    @property
    def run_dir(self) -> Path:
        return self.path.parent


def read_results(path: Path) -> RunResults:
    """Every valid record of a results.json; JsonInputError when the file as a whole cannot be read."""
    document = read_json(path, "results.json")
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        raise JsonInputError(
            f"{path}: not a readable results.json: no 'results' list; is this a t2i-harness results.json?"
        )
    version = document.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise JsonInputError(
            f"{path}: not a readable results.json: format version {shown(version)}; this harness reads "
            f"version {FORMAT_VERSION}"
        )
    refusals: list[Refusal] = []
    environment = read_environment(document.get("environment"), str(path), refusals)
    records = []
    for index, raw in enumerate(document["results"]):
        try:
            records.append((index, parse_record(raw)))
        except ShapeError as exc:
            refusals.append(Refusal(str(path), record_part(index, raw), str(exc), "the record is left out"))
    return RunResults(path, environment, records, refusals)


def read_environment(value: Any, source: str, refusals: list[Refusal]) -> dict[str, str]:
    """The environment section: strings (numbers are shown as they are); anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        refusals.append(
            Refusal(source, "environment", f"expected an object, got {shown(value)}", "the environment is left out")
        )
        return {}
    environment = {}
    for key, item in value.items():
        if isinstance(item, str):
            environment[key] = item
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            environment[key] = repr(item)
        else:
            refusals.append(
                Refusal(source, f"environment entry {shown(key)}", f"expected a string, got {shown(item)}", "left out")
            )
    return environment
