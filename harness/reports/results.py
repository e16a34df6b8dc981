"""One record per item, and results.json: what the report shows and later runs compare against."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.common.atomic import atomic_write_text
from harness.judging.formats import ordered_sections, record_section

if TYPE_CHECKING:
    from harness.cases.case_file import Case
    from harness.judging.judge import Verdict

RESULTS_FILE = "results.json"
FORMAT_VERSION = 1


@dataclass
class ItemRecord:
    id: str  # the pytest node id
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
    tags: list[str]
    image: str | None = None  # relative to the report dir
    # Each judge's verdict by section; results.json holds each under its section's key, null when the case
    # does not declare it (sections: the judges known when the record was made).
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    sections: tuple[str, ...] = ()
    fault: str | None = None
    cached: bool = False  # the image came from the image cache
    cache_key: str | None = None
    image_sha256: str | None = None  # the pixels' digest: with an unchanged cache_key, a change is nondeterminism
    outcome: str = "pending"  # for a seed of a rate-gated case: the seed's own checks (passed, failed, error)
    # A rate-gated case (harness.reports.case_rates): its gate, and the case item's outcome, on each seed's record.
    min_pass_rate: float | None = None
    case_outcome: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. a prompt the text encoder truncates
    baseline: dict[str, Any] | None = (
        None  # how the scores compare with --t2i-baseline (harness.reports.baseline.Drift)
    )
    # Human verdicts on this image by judge section (harness.reports.human_verdicts.HumanNote.to_json); None: none.
    human: dict[str, dict[str, Any]] | None = None

    @classmethod
    def for_case(cls, nodeid: str, case: Case, seed: int, file: str, sections: Iterable[str] = ()) -> ItemRecord:
        return cls(
            id=nodeid,
            case=case.id,
            file=file,
            line=case.line,
            seed=seed,
            prompt=case.prompt,
            negative_prompt=case.negative_prompt,
            steps=case.steps,
            guidance_scale=case.guidance_scale,
            width=case.width,
            height=case.height,
            tags=list(case.tags),
            min_pass_rate=case.min_pass_rate,
            sections=tuple(ordered_sections({*sections, *case.checks})),
        )

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "sections":
                continue
            if item.name == "verdicts":  # where they stood before judges were pluggable: after "image"
                for section in ordered_sections({*self.sections, *self.verdicts}):
                    verdict = self.verdicts.get(section)
                    document[section] = record_section(section, verdict) if verdict is not None else None
                continue
            value = getattr(self, item.name)
            document[item.name] = (
                dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value
            )
        return document


def write_results(report_dir: Path, records: list[dict[str, Any]], environment: dict[str, str]) -> Path:
    writer = ResultsWriter(report_dir)
    for record in records:
        writer.add(record)
    return writer.write(environment)


class ResultsWriter:
    """Rewrites results.json after every item, encoding each record once.

    The file must be current after each item (an interrupted run leaves a valid one), but re-encoding
    every earlier record each time made a run quadratic: json's indenting encoder is pure Python, and
    at 400 records one rewrite took 16 ms (3.9 s over the run). Joining pre-encoded records gives the
    same bytes as ``json.dumps(document, indent=2)``.
    """

    def __init__(
        self,
        report_dir: Path,
        records: dict[str, dict[str, Any]] | None = None,
        case_drifts: dict[tuple[str, str], dict[str, Any]] | None = None,
    ) -> None:
        self.path = report_dir / RESULTS_FILE
        # By node id, in the order items first finished: an item run again (pytest-rerunfailures)
        # replaces its record. The caller may pass its own dict (the report's summary reads the same one),
        # so that an interrupt can never leave the two describing different items.
        self.records: dict[str, dict[str, Any]] = records if records is not None else {}
        self._encoded: dict[str, tuple[dict[str, Any], str]] = {}  # id -> (the record encoded, its encoding)
        # A rate-gated case's comparison with the baseline, by (file, case): it belongs to no one seed's record.
        self.case_drifts: dict[tuple[str, str], dict[str, Any]] = case_drifts if case_drifts is not None else {}
        # The `cases` list: each case summarised again only when one of its records changed.
        self._case_ids: dict[tuple[str, str], dict[str, None]] = {}
        self._case_encoded: dict[tuple[str, str], str | None] = {}

    def add(self, record: dict[str, Any]) -> None:
        record_id = str(record["id"])
        self.records[record_id] = record
        key = (str(record.get("file")), str(record.get("case")))
        self._case_ids.setdefault(key, {})[record_id] = None
        self._case_encoded.pop(key, None)

    def text(self, environment: dict[str, str]) -> str:
        encoded = [self._encoding(key, record) for key, record in self.records.items()]
        results = "[\n" + ",\n".join(encoded) + "\n  ]" if encoded else "[]"
        case_entries = [entry for entry in map(self._case_encoding, self._case_ids) if entry is not None]
        cases = "[\n" + ",\n".join(case_entries) + "\n  ]" if case_entries else "[]"
        return (
            f'{{\n  "version": {_dumps(FORMAT_VERSION)},\n'
            f'  "environment": {_indented(_dumps(environment), "  ", first=False)},\n'
            f'  "results": {results},\n'
            f'  "cases": {cases}\n}}\n'
        )

    def _case_encoding(self, key: tuple[str, str]) -> str | None:
        if key not in self._case_encoded:
            from harness.reports.case_rates import case_entry

            entry = case_entry([self.records[i] for i in self._case_ids[key]], self.case_drifts.get(key))
            self._case_encoded[key] = None if entry is None else _indented(_dumps(entry), "    ")
        return self._case_encoded[key]

    def _encoding(self, key: str, record: dict[str, Any]) -> str:
        cached = self._encoded.get(key)
        if cached is None or cached[0] is not record:  # new, or replaced by a rerun's record
            # At depth 2 of the document: inside the top-level object, inside the "results" list.
            cached = (record, _indented(_dumps(record), "    "))
            self._encoded[key] = cached
        return cached[1]

    def write(self, environment: dict[str, str]) -> Path:
        atomic_write_text(self.path, self.text(environment))
        return self.path


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _indented(text: str, prefix: str, *, first: bool = True) -> str:
    lines = text.split("\n")
    return "\n".join((prefix + line) if (index or first) else line for index, line in enumerate(lines))


def read_results(path: Path) -> dict[str, Any]:
    """The document as it is; harness.reports.records.read_results checks its records, and is what commands use."""
    from harness.common.json_input import read_json

    return read_json(path, RESULTS_FILE)  # type: ignore[no-any-return]
