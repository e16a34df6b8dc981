"""The case-file format: parse a YAML file into validated, frozen Case objects.

Every problem in a file is collected and reported together as ``path:line: case 'id': what``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cases.yaml_source import YamlList, YamlMap, YamlSyntaxError, new_map, parse_yaml
from harness.common.names import SAFE_NAME

if TYPE_CHECKING:
    from harness.judging.judge import Judge

CASE_ID_PATTERN = SAFE_NAME
MAX_ID_LENGTH = 100  # an id names an image file: keep well under file-name limits
# Tags become pytest markers, so they must be valid in a `-m` expression, must not shadow pytest's
# own markers, and must not start with '_' (pytest refuses such marker names).
TAG_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
RESERVED_TAGS = {
    "and", "or", "not", "True", "False", "None",
    "skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings",
}  # fmt: skip
MAX_SEED = 2**63
# `seeds: N` runs seeds 0..N-1; each is an image (and a pipeline call's share): far more than any rate needs.
MAX_SEED_COUNT = 10_000
MAX_STEPS = 10_000
# The largest side any supported pipeline can use (SDXL works at 1024; upscaled SD 1.5 and SDXL at up
# to 4096): a typo like 65536 would otherwise try to allocate tens of GB before failing.
MAX_IMAGE_SIDE = 4096
# Parsing is pure Python: 10 MB takes seconds; a 50 MB file took 50 s and 0.7 GB. Real suites split
# into files of a few hundred cases, far below this.
MAX_CASE_FILE_BYTES = 10 * 2**20

DEFAULT_GUIDANCE_SCALE = 7.5
DEFAULT_STEPS = 50
DEFAULT_SEEDS = (0,)

TOP_LEVEL_KEYS = ("defaults", "cases")
# A case's own keys; each judge adds its section (clip, resnet, ...).
CASE_KEYS = (
    "id", "prompt", "negative_prompt", "guidance_scale", "steps", "seeds", "width", "height",
    "tags", "skip", "xfail", "tolerance", "min_pass_rate",
)  # fmt: skip


def case_keys(sections: Iterable[str]) -> tuple[str, ...]:
    """The keys a case accepts: its own, with the judges' sections where the checks always stood."""
    at = CASE_KEYS.index("tags")
    return (*CASE_KEYS[:at], *sections, *CASE_KEYS[at:])


# Everything a file's cases could share; id, prompt and the checks are per case by nature.
DEFAULTS_KEYS = (
    "negative_prompt", "guidance_scale", "steps", "seeds", "width", "height", "tags", "tolerance", "min_pass_rate",
)  # fmt: skip

_FILE_SHAPE = "a case file is a mapping whose 'cases:' key holds a list of cases, each starting with '- id: ...'"


@dataclass(frozen=True)
class Case:
    id: str
    prompt: str
    path: Path
    line: int
    # The checks the case declares, by judge section ("clip", "resnet", ...), in the judges' order; each
    # value is what that judge's parse() returned (harness.judging.judge).
    checks: dict[str, Any] = field(default_factory=dict, hash=False)
    negative_prompt: str | None = None
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    steps: int = DEFAULT_STEPS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    width: int | None = None
    height: int | None = None
    tags: tuple[str, ...] = ()
    skip: str | None = None
    xfail: str | None = None
    tolerance: float | None = None  # allowed drop below a baseline (harness.reports.baseline); None: --t2i-tolerance
    # The share of its seeds that must pass (harness.reports.case_rates); None: every seed must pass, one item each.
    min_pass_rate: float | None = None

    @property
    def rate_gated(self) -> bool:
        """Judged as a rate over its seeds, in one pytest item, rather than one item per seed."""
        return self.min_pass_rate is not None


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a case file. A case without a usable id is named by its position."""

    line: int
    message: str
    case_id: str | None = None
    case_number: int | None = None  # 1-based position in 'cases'

    def format(self, path: Path | str) -> str:
        where = f"{path}:{self.line}: "
        if self.case_id is not None:
            where += f"case {self.case_id!r}: "
        elif self.case_number is not None:
            where += f"case #{self.case_number}: "
        return where + self.message


class CaseFileError(Exception):
    """A case file that cannot be used; carries every problem found in it."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__(self.render())

    def render(self, shown_path: Path | str | None = None) -> str:
        shown = shown_path if shown_path is not None else self.path
        count = len(self.problems)
        header = f"{shown}: {count} problem{'s' if count != 1 else ''} in this case file:"
        return "\n".join([header, *(f"  {p.format(shown)}" for p in self.problems)])


def load_case_file(path: Path, judges: Iterable[Judge[Any, Any]] | None = None) -> list[Case]:
    """Parse and validate one case file; raise CaseFileError listing every problem.

    ``judges`` read the check sections; None: the built-in ones (CLIP and ResNet-50).
    """
    try:
        size = path.stat().st_size
        if size > MAX_CASE_FILE_BYTES:
            raise CaseFileError(
                path,
                [
                    Problem(
                        1,
                        f"the file is {size / 2**20:.1f} MB; case files are limited to "
                        f"{MAX_CASE_FILE_BYTES // 2**20} MB (parsing is slow beyond that): split it into several files",
                    )
                ],
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise CaseFileError(
            path, [Problem(line, f"not UTF-8 text (byte {exc.object[exc.start]:#04x}); save the file as UTF-8")]
        ) from None
    except OSError as exc:
        raise CaseFileError(path, [Problem(1, f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        document = parse_yaml(text)
    except YamlSyntaxError as exc:
        raise CaseFileError(path, [Problem(p.line, p.message) for p in exc.problems]) from None
    if judges is None:
        from harness.judging.builtin import builtin_judges

        judges = builtin_judges()
    parser = _CaseFileParser(path, {judge.section: judge for judge in judges})
    cases = parser.parse(document)
    if parser.problems:
        raise CaseFileError(path, parser.problems)
    return cases


def suggest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean ...?)' for near misses, or ''. Matching ignores case."""
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    matches = difflib.get_close_matches(word.casefold(), list(by_folded), n=n, cutoff=0.6)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(repr(by_folded[m]) for m in matches) + "?)"


def label_key(label: str) -> str:
    """Labels CLIP cannot tell apart: its tokenizer lowercases and splits on whitespace."""
    return " ".join(label.casefold().split())


def suggested_id(raw: str) -> str:
    """A valid id close to ``raw``, for the fix hint of an invalid one."""
    candidate = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-_.")[:MAX_ID_LENGTH]
    return candidate or "my-case"


@dataclass(frozen=True)
class _Owner:
    """Whose problems these are: the file (no case), or a case by id or position."""

    case_id: str | None = None
    number: int | None = None


_FILE = _Owner()
_INVALID = object()  # a value that failed validation (its problem is already recorded)


@dataclass(frozen=True)
class _Value:
    """A raw YAML value with where it came from."""

    raw: Any
    line: int
    text: str | None  # source text, for scalars
    name: str  # how messages call it: 'steps', 'defaults.steps', 'clip.expect'


@dataclass
class _CaseFileParser:
    path: Path
    judges: dict[str, Judge[Any, Any]]  # by section
    problems: list[Problem] = field(default_factory=list)

    def _problem(self, line: int, message: str, owner: _Owner) -> None:
        self.problems.append(Problem(line, message, owner.case_id, owner.number))

    # -- the file ---------------------------------------------------------------------------

    def parse(self, document: Any) -> list[Case]:
        if document is None:
            self._problem(1, f"the file is empty (or holds only comments); {_FILE_SHAPE}", _FILE)
            return []
        if not isinstance(document, YamlMap):
            line = getattr(document, "line", 1)
            self._problem(line, f"the top level is {kind_of(document)}, not a mapping; {_FILE_SHAPE}", _FILE)
            return []
        self._check_keys(document, TOP_LEVEL_KEYS, "at the top level", _FILE)
        if "cases" not in document:
            self._problem(document.line, f"no top-level 'cases:' key; {_FILE_SHAPE}", _FILE)
            return []

        defaults = self._defaults(document)
        raw_cases, cases_line = document["cases"], document.key_lines["cases"]
        if raw_cases is None or raw_cases == []:
            self._problem(cases_line, "'cases' is empty; add at least one case under it ('- id: ...')", _FILE)
            return []
        if not isinstance(raw_cases, YamlList):
            self._problem(
                cases_line,
                f"'cases' must be a list of cases (each starting with '- id: ...'), got {kind_of(raw_cases)}",
                _FILE,
            )
            return []

        cases = []
        seen_ids: dict[str, tuple[str, int]] = {}  # casefolded id -> (id, line)
        for number, (raw, line) in enumerate(zip(raw_cases, raw_cases.item_lines, strict=True), start=1):
            owner = _Owner(number=number)
            if not isinstance(raw, YamlMap):
                self._problem(
                    line,
                    f"this item of 'cases' is {kind_of(raw)}, not a mapping; a case is a mapping with at least "
                    + _listed(
                        [
                            "'id'",
                            "'prompt'",
                            *(f"'{s}'" for s, judge in self.judges.items() if judge.required),
                            "a check (such as 'clip:')",
                        ]
                    ),
                    owner,
                )
                continue
            owner = self._id(raw, number)
            if owner.case_id is not None and CASE_ID_PATTERN.match(owner.case_id):
                self._unique_id(owner, raw.key_lines["id"], seen_ids)
            case = self._case(raw, owner, defaults)
            if case is not None:
                cases.append(case)
        return [] if self.problems else cases

    def _check_keys(self, mapping: YamlMap, allowed: tuple[str, ...], where: str, owner: _Owner) -> None:
        for key in mapping:
            if key in allowed:
                continue
            if where == "in 'defaults'" and key in CASE_KEYS:
                fix = f"'{key}' cannot be a default; set it in each case (defaults take: {', '.join(DEFAULTS_KEYS)})"
            elif where == "in a case" and self._owning_sections(key) and not suggest(key, allowed):
                owners = " or ".join(f"'{section}:'" for section in self._owning_sections(key))
                fix = f"unknown key {key!r} in a case; it belongs under {owners}"
            else:
                fix = f"unknown key {key!r} {where}{suggest(key, allowed, n=1)}; allowed keys: {', '.join(allowed)}"
            self._problem(mapping.key_lines[key], fix, owner)

    def _owning_sections(self, key: str) -> list[str]:
        return [section for section, judge in self.judges.items() if key in judge.keys]

    def _defaults(self, document: YamlMap) -> dict[str, Any]:
        """The file's validated defaults; a problem in them is reported once, not once per case."""
        raw = document.get("defaults")
        if raw is None:
            return {}
        if not isinstance(raw, YamlMap):
            self._problem(
                document.key_lines["defaults"],
                f"'defaults' must be a mapping of case keys (e.g. 'steps: 25'), got {kind_of(raw)}",
                _FILE,
            )
            return {}
        self._check_keys(raw, DEFAULTS_KEYS, "in 'defaults'", _FILE)
        values = {}
        for key in DEFAULTS_KEYS:
            if key in raw and raw[key] is not None:
                value = self._shared(
                    key, _Value(raw[key], raw.key_lines[key], raw.texts.get(key), f"defaults.{key}"), _FILE
                )
                if value is not _INVALID:
                    values[key] = value
        return values

    # -- one case ---------------------------------------------------------------------------

    def _id(self, raw: YamlMap, number: int) -> _Owner:
        """The owner name for this case's problems, reporting a missing or invalid id."""
        example = "e.g. 'id: watercolor-owl' (letters, digits, '-', '_' and '.')"
        case_id = raw.get("id")
        if case_id is None:
            self._problem(raw.line, f"missing 'id'; every case needs a unique id, {example}", _Owner(number=number))
            return _Owner(number=number)
        line, text = raw.key_lines["id"], raw.texts.get("id")
        if not isinstance(case_id, str):
            self._problem(line, quote_hint("'id'", case_id, text), _Owner(number=number))
            return _Owner(number=number)
        owner = _Owner(case_id=case_id, number=number)
        if len(case_id) > MAX_ID_LENGTH:
            self._problem(line, f"the id is {len(case_id)} characters long; keep it to {MAX_ID_LENGTH}", owner)
        elif not CASE_ID_PATTERN.match(case_id):
            self._problem(
                line,
                f"invalid id {case_id!r}: an id starts with a letter or digit and holds only letters, digits, "
                f"'-', '_' and '.', because it names the test and its image file; try {suggested_id(case_id)!r}",
                owner,
            )
        return owner

    def _unique_id(self, owner: _Owner, line: int, seen: dict[str, tuple[str, int]]) -> None:
        assert owner.case_id is not None
        folded = owner.case_id.casefold()
        if folded not in seen:
            seen[folded] = (owner.case_id, line)
            return
        first_id, first_line = seen[folded]
        if first_id == owner.case_id:
            message = f"duplicate case id: line {first_line} already uses it; ids must be unique within a file"
        else:
            message = (
                f"case id clashes with {first_id!r} on line {first_line}: ids that differ only in case would "
                "share an image file on macOS and Windows; rename one"
            )
        self._problem(line, message, owner)

    def _case(self, raw: YamlMap, owner: _Owner, defaults: dict[str, Any]) -> Case | None:
        before = len(self.problems)
        self._check_keys(raw, case_keys(self.judges), "in a case", owner)

        prompt = self._text(self._value(raw, "prompt"), owner, required=True)
        shared = dict(defaults)
        for key in DEFAULTS_KEYS:
            if key in raw and raw[key] is not None:
                shared[key] = self._shared(key, self._value(raw, key), owner)
        checks = self._checks(raw, owner)
        skip = self._reason(raw, "skip", owner)
        xfail = self._reason(raw, "xfail", owner)

        if len(self.problems) > before or owner.case_id is None or checks is None:
            return None
        return Case(
            id=owner.case_id,
            prompt=prompt,
            negative_prompt=shared.get("negative_prompt"),
            guidance_scale=shared.get("guidance_scale", DEFAULT_GUIDANCE_SCALE),
            steps=shared.get("steps", DEFAULT_STEPS),
            seeds=shared.get("seeds", DEFAULT_SEEDS),
            width=shared.get("width"),
            height=shared.get("height"),
            checks=checks,
            tags=shared.get("tags", ()),
            skip=skip,
            xfail=xfail,
            tolerance=shared.get("tolerance"),
            min_pass_rate=shared.get("min_pass_rate"),
            path=self.path,
            line=raw.line,
        )

    @staticmethod
    def _value(mapping: YamlMap, key: str, prefix: str = "", missing_line: int | None = None) -> _Value:
        """``mapping[key]`` with its line; a missing key points at ``missing_line`` (default: the mapping's)."""
        line = mapping.key_lines.get(key, missing_line if missing_line is not None else mapping.line)
        return _Value(mapping.get(key), line, mapping.texts.get(key), prefix + key)

    def _shared(self, key: str, value: _Value, owner: _Owner) -> Any:
        """Validate a key that a case may take from 'defaults'."""
        if key == "negative_prompt":
            return self._text(value, owner, required=False)
        if key == "guidance_scale":
            return self._guidance(value, owner)
        if key == "steps":
            return self._integer(value, owner, 1, MAX_STEPS, "e.g. 25")
        if key == "seeds":
            return self._seeds(value, owner)
        if key in ("width", "height"):
            return self._size(value, owner)
        if key == "tags":
            return self._tags(value, owner)
        if key == "tolerance":
            return self._tolerance(value, owner)
        if key == "min_pass_rate":
            return self._min_pass_rate(value, owner)
        raise AssertionError(key)

    def _min_pass_rate(self, value: _Value, owner: _Owner) -> Any:
        raw = value.raw
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw <= 1:
            self._problem(
                value.line,
                f"'{value.name}' must be a number in (0, 1], such as 0.75 (the share of the case's seeds whose "
                f"checks must all pass); got {kind_of(raw)}",
                owner,
            )
            return _INVALID
        return float(raw)

    def _tolerance(self, value: _Value, owner: _Owner) -> Any:
        raw = value.raw
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= 1:
            self._problem(
                value.line,
                f"'{value.name}' must be a number in [0, 1], such as 0.05 (the largest drop in CLIP probability "
                f"or margin below the baseline that still passes); got {kind_of(raw)}",
                owner,
            )
            return _INVALID
        return float(raw)

    # -- value checks -----------------------------------------------------------------------

    def _text(self, value: _Value, owner: _Owner, *, required: bool) -> Any:
        if value.raw is None:
            if required:
                self._problem(
                    value.line,
                    f"missing '{value.name}'; e.g. {value.name.split('.')[-1]}: \"an owl on a branch\"",
                    owner,
                )
                return _INVALID
            return None
        if not isinstance(value.raw, str):
            self._problem(value.line, quote_hint(f"'{value.name}'", value.raw, value.text), owner)
            return _INVALID
        if required and not value.raw.strip():
            self._problem(value.line, f"'{value.name}' is empty; write the text it should hold", owner)
            return _INVALID
        return value.raw

    def _guidance(self, value: _Value, owner: _Owner) -> Any:
        raw = value.raw
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            self._problem(value.line, f"'{value.name}' must be a number such as 7.5, got {kind_of(raw)}", owner)
            return _INVALID
        if raw < 0:
            self._problem(
                value.line, f"'{value.name}' must be >= 0 (7.5 is usual; 0 or 1 turns guidance off), got {raw}", owner
            )
            return _INVALID
        return float(raw)

    def _integer(self, value: _Value, owner: _Owner, minimum: int, maximum: int, example: str) -> Any:
        raw = value.raw
        if isinstance(raw, bool) or not isinstance(raw, int):
            self._problem(value.line, f"'{value.name}' must be a whole number ({example}), got {kind_of(raw)}", owner)
            return _INVALID
        if not minimum <= raw <= maximum:
            self._problem(
                value.line, f"'{value.name}' must be between {minimum} and {maximum} ({example}), got {raw}", owner
            )
            return _INVALID
        return raw

    def _seeds(self, value: _Value, owner: _Owner) -> Any:
        raw = value.raw
        rule = f"seeds are whole numbers from 0 to {MAX_SEED - 1} (2**63 - 1)"
        if isinstance(raw, int) and not isinstance(raw, bool):
            # A count: `seeds: 8` is seeds 0..7. (One seed of its own is a list: `seeds: [42]`.)
            if not 1 <= raw <= MAX_SEED_COUNT:
                self._problem(
                    value.line,
                    f"'{value.name}: {raw}' is not a number of seeds: a whole number from 1 to {MAX_SEED_COUNT} "
                    f"runs seeds 0 to N-1 (e.g. {value.name}: 8); to run particular seeds, list them: [0, 42]",
                    owner,
                )
                return _INVALID
            return tuple(range(raw))
        if isinstance(raw, YamlList):
            items = list(zip(raw, raw.item_lines, raw.texts, strict=True))
        else:
            items = [(raw, value.line, value.text)]
        if not isinstance(raw, YamlList) or items == []:
            self._problem(
                value.line,
                f"'{value.name}' must be a number of seeds (8 runs seeds 0 to 7) or a non-empty list of seeds, "
                f"e.g. [0, 1, 2]; got {kind_of(raw)}",
                owner,
            )
            return _INVALID
        seeds: dict[int, int] = {}  # seed -> line
        ok = True
        for seed, line, text in items:
            if isinstance(seed, bool) or not isinstance(seed, int):
                self._problem(
                    line, f"seed {text if text is not None else kind_of(seed)} is not a whole number; {rule}", owner
                )
                ok = False
            elif not 0 <= seed < MAX_SEED:
                self._problem(line, f"seed {seed} is out of range; {rule}", owner)
                ok = False
            elif seed in seeds:
                self._problem(
                    line, f"seed {seed} is listed twice{_also_on(seeds[seed], line)}; remove the repeat", owner
                )
                ok = False
            else:
                seeds[seed] = line
        return tuple(seeds) if ok else _INVALID

    def _size(self, value: _Value, owner: _Owner) -> Any:
        raw = value.raw
        if isinstance(raw, bool) or not isinstance(raw, int):
            self._problem(
                value.line,
                f"'{value.name}' must be a whole number of pixels, a multiple of 8 such as 512; got {kind_of(raw)}",
                owner,
            )
            return _INVALID
        if raw > MAX_IMAGE_SIDE:
            self._problem(
                value.line,
                f"'{value.name}' is {raw} pixels; the largest size a supported pipeline can use is {MAX_IMAGE_SIDE} "
                "(SD 1.5 works at 512, SDXL at 1024)",
                owner,
            )
            return _INVALID
        if raw <= 0 or raw % 8:
            below, above = raw // 8 * 8, raw // 8 * 8 + 8
            nearest = f"; the nearest are {below} and {above}" if raw > 8 else "; e.g. 512"
            self._problem(
                value.line,
                f"'{value.name}' must be a positive multiple of 8 (the VAE works in 8-pixel blocks), "
                f"got {raw}{nearest}",
                owner,
            )
            return _INVALID
        return raw

    def _tags(self, value: _Value, owner: _Owner) -> Any:
        raw = value.raw
        items = (
            list(zip(raw, raw.item_lines, raw.texts, strict=True))
            if isinstance(raw, YamlList)
            else [(raw, value.line, value.text)]
        )
        if isinstance(raw, YamlMap):
            self._problem(
                value.line, f"'{value.name}' must be a list of words, e.g. [animals, slow]; got a mapping", owner
            )
            return _INVALID
        tags = []
        for tag, line, text in items:
            if not isinstance(tag, str):
                self._problem(line, quote_hint("each tag", tag, text), owner)
            elif not TAG_PATTERN.match(tag) or tag in RESERVED_TAGS:
                self._problem(
                    line,
                    f"invalid tag {tag!r}: tags become pytest markers, so they start with a letter, hold "
                    "only letters, digits, '_' and '-', and are none of "
                    + ", ".join(sorted(RESERVED_TAGS))
                    + f"; try {suggested_tag(tag)!r}",
                    owner,
                )
            else:
                tags.append(tag)
        if len(tags) != len(items):
            return _INVALID
        return tuple(dict.fromkeys(tags))

    def _labels(self, value: _Value, owner: _Owner, what: str) -> list[tuple[str, int]] | None:
        """A non-empty list of non-empty strings (a single string counts as a list of one)."""
        raw = value.raw
        if isinstance(raw, YamlList):
            items = list(zip(raw, raw.item_lines, raw.texts, strict=True))
        elif raw is None or isinstance(raw, YamlMap):
            items = []
        else:
            items = [(raw, value.line, value.text)]
        if not items:
            self._problem(value.line, f"'{value.name}' needs at least one {what}", owner)
            return None
        labels = []
        for label, line, text in items:
            if not isinstance(label, str):
                self._problem(line, quote_hint(f"each label in '{value.name}'", label, text), owner)
            elif not label.strip():
                self._problem(line, f"'{value.name}' holds an empty label; remove it or fill it in", owner)
            else:
                labels.append((label, line))
        return labels if len(labels) == len(items) else None

    def _checks(self, raw: YamlMap, owner: _Owner) -> dict[str, Any] | None:
        """Each judge's check, from its section; None when a section is missing or has problems."""
        checks: dict[str, Any] = {}
        complete = True
        for section, judge in self.judges.items():
            if raw.get(section) is None:
                if judge.required:
                    self._problem(
                        raw.key_lines.get(section, raw.line),
                        f"missing '{section}' section: {judge.missing_hint or f'add {section}:'}",
                        owner,
                    )
                    complete = False
                continue
            mapping, line = raw[section], raw.key_lines[section]
            if isinstance(mapping, YamlList) and judge.list_key:
                # The short form: `objects: [...]` is `objects: {expect: [...]}`.
                wrapped = new_map(line)
                wrapped[judge.list_key], wrapped.key_lines[judge.list_key] = mapping, line
                mapping = wrapped
            if not isinstance(mapping, YamlMap):
                hint = f" with {' and '.join(repr(k) for k in judge.keys[:2])}" if judge.keys else ""
                self._problem(line, f"'{section}' must be a mapping{hint}, got {kind_of(mapping)}", owner)
                complete = False
                continue
            reader = SectionReader(self, section, mapping, line, owner)
            before = len(self.problems)
            self._check_keys(mapping, judge.keys, f"in '{section}'", owner)
            check = judge.parse(reader)
            if check is None or len(self.problems) > before:
                complete = False
            else:
                checks[section] = check
        if complete and not checks and self.judges:
            # A case without a check would pass on any image: name the usual one, and the others it may use.
            first = "clip" if "clip" in self.judges else next(iter(self.judges))
            hint = self.judges[first].missing_hint or f"add {first}:"
            others = [f"'{section}:'" for section in self.judges if section != first]
            self._problem(
                raw.line,
                f"missing '{first}' section: {hint}"
                + (f"; a case needs at least one check, this one or {', '.join(others)}" if others else ""),
                owner,
            )
            return None
        return checks if complete else None

    def _reason(self, raw: YamlMap, key: str, owner: _Owner) -> str | None:
        if raw.get(key) is None:
            return None
        reason = raw[key]
        if not isinstance(reason, str) or not reason.strip():
            self._problem(
                raw.key_lines[key],
                f"'{key}' takes a reason, e.g. {key}: \"flaky on fp16\"; got {kind_of(reason)}",
                owner,
            )
            return None
        return reason


class SectionReader:
    """A judge's view of its section of one case: values with their lines, and where to report problems.

    Problems read ``path:line: case 'id': what``, like every other problem of the file; the methods that
    validate a value report their own problem and return None when it is wrong.
    """

    def __init__(self, parser: _CaseFileParser, section: str, mapping: YamlMap, line: int, owner: _Owner) -> None:
        self._parser = parser
        self.section = section
        self.mapping = mapping
        self.line = line  # the line of the section's key
        self._owner = owner
        self.case_id = owner.case_id

    def __contains__(self, key: str) -> bool:
        return key in self.mapping and self.mapping[key] is not None

    def value(self, key: str) -> _Value:
        """The raw value of ``key`` (None if absent) with its line and how messages name it ('clip.expect')."""
        return self._parser._value(self.mapping, key, f"{self.section}.", self.line)

    def problem(self, line: int, message: str) -> None:
        self._parser._problem(line, message, self._owner)

    def text(self, key: str, *, required: bool) -> Any:
        """A string (non-empty when required); None when absent and not required."""
        return self._parser._text(self.value(key), self._owner, required=required)

    def labels(self, key: str, what: str) -> list[tuple[str, int]] | None:
        """A non-empty list of non-empty strings (one string counts as a list of one), each with its line."""
        return self._parser._labels(self.value(key), self._owner, what)

    def integer(self, key: str, minimum: int, maximum: int, example: str, default: int) -> int | None:
        """A whole number in [minimum, maximum], ``default`` when absent; None when wrong (the problem is reported)."""
        value = self.value(key)
        if value.raw is None:
            return default
        found = self._parser._integer(value, self._owner, minimum, maximum, example)
        return None if found is _INVALID else int(found)

    def number(self, key: str, minimum: float, maximum: float, example: str, what: str = "a number") -> float | None:
        """A number in [minimum, maximum]; None when absent or wrong (the problem is reported: ``key in section``
        tells the two apart)."""
        value = self.value(key)
        raw = value.raw
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not minimum <= raw <= maximum:
            self.problem(
                value.line,
                f"'{value.name}' must be {what} in [{minimum:g}, {maximum:g}], {example}; got {kind_of(raw)}",
            )
            return None
        return float(raw)


def also_on(first_line: int, line: int) -> str:
    """' (also on line N)' when a repeated value's first occurrence is on another line."""
    return _also_on(first_line, line)


def suggested_tag(tag: str) -> str:
    candidate = re.sub(r"[^A-Za-z0-9_-]+", "_", tag).strip("-")
    if not candidate or not TAG_PATTERN.match(candidate) or candidate in RESERVED_TAGS:
        candidate = "t_" + candidate.lstrip("_-")
    return candidate


def quote_hint(subject: str, value: Any, text: str | None) -> str:
    """'x' must be text: for a value YAML read as a number, boolean or null, show how to quote it."""
    what = f"{subject} must be text"
    if text is None or isinstance(value, (YamlMap, YamlList)):
        return f"{what}, got {kind_of(value)}"
    return f'{what}, but YAML reads {text} as {kind_of(value)}; put it in quotes: "{text}"'


def _listed(parts: list[str]) -> str:
    """'id', 'prompt' and a check"""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _also_on(first_line: int, line: int) -> str:
    return f" (also on line {first_line})" if first_line != line else ""


def kind_of(value: Any) -> str:
    """How a message names what YAML read: "the number 3", "a list", "nothing (null)"."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"the text {value!r}"
