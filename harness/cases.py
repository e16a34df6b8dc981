"""The case-file format: parse a YAML file into validated, frozen Case objects.

Every problem in a file is collected and reported together as ``path:line: case 'id': what``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.imagenet import imagenet_categories
from harness.yaml_source import YamlList, YamlMap, YamlSyntaxError, parse_yaml

CASE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# Tags become pytest markers, so they must be valid in a `-m` expression and must not shadow
# pytest's own markers.
TAG_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
RESERVED_TAGS = {
    "and", "or", "not", "True", "False", "None",
    "skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings",
}
MAX_SEED = 2**63

DEFAULT_GUIDANCE_SCALE = 7.5
DEFAULT_STEPS = 50
DEFAULT_SEEDS = (0,)

TOP_LEVEL_KEYS = ("defaults", "cases")
CASE_KEYS = (
    "id", "prompt", "negative_prompt", "guidance_scale", "steps", "seeds", "width", "height",
    "clip", "resnet", "tags", "skip", "xfail",
)
# Everything a file's cases could share; id, prompt and the checks are per case by nature.
DEFAULTS_KEYS = ("negative_prompt", "guidance_scale", "steps", "seeds", "width", "height", "tags")
CLIP_KEYS = ("expect", "distractors", "min_prob")
RESNET_KEYS = ("expect", "top_k")


@dataclass(frozen=True)
class ClipCheck:
    """CLIP must rank ``expect`` above every distractor (and reach ``min_prob`` if set)."""

    expect: str
    distractors: tuple[str, ...]
    min_prob: float | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.expect, *self.distractors)


@dataclass(frozen=True)
class ResnetCheck:
    """ResNet-50 must put one of ``expect`` (ImageNet class names) in its top ``top_k``."""

    expect: tuple[str, ...]
    top_k: int = 1


@dataclass(frozen=True)
class Case:
    id: str
    prompt: str
    clip: ClipCheck
    path: Path
    line: int
    negative_prompt: str | None = None
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    steps: int = DEFAULT_STEPS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    width: int | None = None
    height: int | None = None
    resnet: ResnetCheck | None = None
    tags: tuple[str, ...] = ()
    skip: str | None = None
    xfail: str | None = None


@dataclass(frozen=True)
class Problem:
    line: int
    message: str
    case_id: str | None = None

    def format(self, path: Path | str) -> str:
        where = f"{path}:{self.line}: "
        if self.case_id is not None:
            where += f"case {self.case_id!r}: "
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


def load_case_file(path: Path) -> list[Case]:
    """Parse and validate one case file; raise CaseFileError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CaseFileError(path, [Problem(1, f"not UTF-8 text ({exc.reason}); save the file as UTF-8")]) from None
    try:
        document = parse_yaml(text)
    except YamlSyntaxError as exc:
        raise CaseFileError(path, [Problem(p.line, p.message) for p in exc.problems]) from None
    parser = _CaseFileParser(path)
    cases = parser.parse(document)
    if parser.problems:
        raise CaseFileError(path, parser.problems)
    return cases


def suggest(word: str, choices: Any, n: int = 3) -> str:
    """' (did you mean ...?)' for near misses, or ''."""
    matches = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(repr(m) for m in matches) + "?)"


@dataclass
class _CaseFileParser:
    path: Path
    problems: list[Problem] = field(default_factory=list)

    def _problem(self, line: int, message: str, case_id: str | None = None) -> None:
        self.problems.append(Problem(line, message, case_id))

    def _check_keys(self, mapping: YamlMap, allowed: tuple[str, ...], where: str, case_id: str | None) -> None:
        for key in mapping:
            if key not in allowed:
                self._problem(
                    mapping.key_lines[key],
                    f"unknown key {key!r} in {where}{suggest(key, allowed)}; allowed keys: {', '.join(allowed)}",
                    case_id,
                )

    def parse(self, document: Any) -> list[Case]:
        example = "a case file is a mapping with a 'cases:' list, e.g.\n    cases:\n      - id: my-case\n        prompt: ..."
        if document is None:
            self._problem(1, f"the file is empty; {example}")
            return []
        if not isinstance(document, YamlMap) or "cases" not in document:
            line = getattr(document, "line", 1)
            self._problem(line, f"no top-level 'cases:' key; {example}")
            if isinstance(document, YamlMap):
                self._check_keys(document, TOP_LEVEL_KEYS, "the top level", None)
            return []
        self._check_keys(document, TOP_LEVEL_KEYS, "the top level", None)

        defaults: YamlMap = YamlMap()
        defaults.line, defaults.key_lines = 1, {}
        raw_defaults = document.get("defaults")
        if raw_defaults is not None:
            if isinstance(raw_defaults, YamlMap):
                self._check_keys(raw_defaults, DEFAULTS_KEYS, "'defaults'", None)
                defaults = raw_defaults
            else:
                self._problem(document.key_lines["defaults"], "'defaults' must be a mapping of case keys")

        raw_cases = document["cases"]
        if not isinstance(raw_cases, YamlList):
            self._problem(document.key_lines["cases"], "'cases' must be a list of cases (each item starts with '- id: ...')")
            return []
        if not raw_cases:
            self._problem(document.key_lines["cases"], "'cases' is empty; add at least one case")
            return []

        cases = []
        first_line_of_id: dict[str, int] = {}
        for raw, line in zip(raw_cases, raw_cases.item_lines):
            case = self._parse_case(raw, line, defaults)
            if case is None:
                continue
            if case.id in first_line_of_id:
                self._problem(
                    line,
                    f"duplicate case id; the same id is already used on line {first_line_of_id[case.id]} "
                    "(ids must be unique within a file)",
                    case.id,
                )
                continue
            first_line_of_id[case.id] = line
            cases.append(case)
        return cases

    def _parse_case(self, raw: Any, line: int, defaults: YamlMap) -> Case | None:
        if not isinstance(raw, YamlMap):
            self._problem(line, "each item of 'cases' must be a mapping with at least 'id', 'prompt' and 'clip'")
            return None
        count_before = len(self.problems)

        case_id = raw.get("id")
        shown_id: str | None = None
        if case_id is None:
            self._problem(raw.line, "missing 'id' (letters, digits, '-', '_', '.'; e.g. 'id: watercolor-owl')")
        elif not isinstance(case_id, str) or not CASE_ID_PATTERN.match(case_id):
            self._problem(
                raw.key_lines["id"],
                f"invalid id {str(case_id)!r}: an id starts with a letter or digit and holds only "
                "letters, digits, '-', '_' and '.' (it names the image file and the test)",
            )
        else:
            shown_id = case_id
        self._check_keys(raw, CASE_KEYS, "a case", shown_id)

        def value(key: str) -> tuple[Any, int]:
            if key in raw:
                return raw[key], raw.key_lines[key]
            if key in defaults:
                return defaults[key], defaults.key_lines[key]
            return None, raw.line

        prompt, prompt_line = value("prompt")
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            self._problem(prompt_line, "missing or empty 'prompt'", shown_id)
        elif not isinstance(prompt, str):
            self._problem(prompt_line, f"'prompt' must be a string, got {_kind(prompt)}", shown_id)

        negative, negative_line = value("negative_prompt")
        if negative is not None and not isinstance(negative, str):
            self._problem(negative_line, f"'negative_prompt' must be a string, got {_kind(negative)}", shown_id)

        guidance = self._number(value("guidance_scale"), "guidance_scale", DEFAULT_GUIDANCE_SCALE, shown_id, minimum=0.0)
        steps = self._integer(value("steps"), "steps", DEFAULT_STEPS, shown_id, minimum=1, maximum=10_000)
        seeds = self._seeds(value("seeds"), shown_id)
        width = self._size(value("width"), "width", shown_id)
        height = self._size(value("height"), "height", shown_id)
        clip = self._clip(raw, shown_id)
        resnet = self._resnet(raw, shown_id)
        tags = self._tags(value("tags"), shown_id)
        skip = self._reason(raw, "skip", shown_id)
        xfail = self._reason(raw, "xfail", shown_id)

        if len(self.problems) > count_before or shown_id is None or clip is None:
            return None
        return Case(
            id=shown_id,
            prompt=prompt,
            negative_prompt=negative,
            guidance_scale=guidance,
            steps=steps,
            seeds=seeds,
            width=width,
            height=height,
            clip=clip,
            resnet=resnet,
            tags=tags,
            skip=skip,
            xfail=xfail,
            path=self.path,
            line=raw.line,
        )

    def _number(self, found: tuple[Any, int], key: str, default: float, case_id: str | None, *, minimum: float) -> float:
        raw, line = found
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            self._problem(line, f"{key!r} must be a number, got {_kind(raw)}", case_id)
            return default
        if raw < minimum:
            self._problem(line, f"{key!r} must be >= {minimum}, got {raw}", case_id)
        return float(raw)

    def _integer(
        self, found: tuple[Any, int], key: str, default: int, case_id: str | None, *, minimum: int, maximum: int
    ) -> int:
        raw, line = found
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, int):
            self._problem(line, f"{key!r} must be a whole number, got {_kind(raw)}", case_id)
            return default
        if not minimum <= raw <= maximum:
            self._problem(line, f"{key!r} must be between {minimum} and {maximum}, got {raw}", case_id)
        return raw

    def _seeds(self, found: tuple[Any, int], case_id: str | None) -> tuple[int, ...]:
        raw, line = found
        if raw is None:
            return DEFAULT_SEEDS
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            self._problem(line, f"'seeds' must be a non-empty list of whole numbers, e.g. [0, 1]; got {_kind(raw)}", case_id)
            return DEFAULT_SEEDS
        seeds = []
        for seed in raw:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
                self._problem(line, f"seed {seed!r} is not a whole number in [0, 2**63)", case_id)
            elif seed in seeds:
                self._problem(line, f"seed {seed} is listed twice", case_id)
            else:
                seeds.append(seed)
        return tuple(seeds) or DEFAULT_SEEDS

    def _size(self, found: tuple[Any, int], key: str, case_id: str | None) -> int | None:
        raw, line = found
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0 or raw % 8:
            self._problem(line, f"{key!r} must be a positive multiple of 8 (e.g. 512), got {raw!r}", case_id)
            return None
        return raw

    def _string_list(self, raw: Any, line: int, what: str, case_id: str | None) -> list[str] | None:
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(item, str) and item.strip() for item in raw):
            self._problem(line, f"{what} must be a list of non-empty strings", case_id)
            return None
        return list(raw)

    def _clip(self, raw: YamlMap, case_id: str | None) -> ClipCheck | None:
        if "clip" not in raw:
            self._problem(raw.line, "missing 'clip' section (with 'expect' and 'distractors')", case_id)
            return None
        section, line = raw["clip"], raw.key_lines["clip"]
        if not isinstance(section, YamlMap):
            self._problem(line, "'clip' must be a mapping with 'expect' and 'distractors'", case_id)
            return None
        self._check_keys(section, CLIP_KEYS, "'clip'", case_id)
        expect = section.get("expect")
        ok = True
        if not isinstance(expect, str) or not expect.strip():
            self._problem(section.key_lines.get("expect", line), "missing or empty 'clip.expect' (the label CLIP should pick)", case_id)
            ok = False
        raw_distractors = section.get("distractors")
        distractors_line = section.key_lines.get("distractors", line)
        distractors: list[str] | None = None
        if raw_distractors is None or raw_distractors == []:
            self._problem(
                distractors_line,
                "'clip.distractors' needs at least one label the model could confuse with the intended one",
                case_id,
            )
            ok = False
        else:
            distractors = self._string_list(raw_distractors, distractors_line, "'clip.distractors'", case_id)
            ok = ok and distractors is not None
        if distractors is not None:
            seen: set[str] = set()
            for label in distractors:
                if isinstance(expect, str) and label.strip() == expect.strip():
                    self._problem(distractors_line, f"the intended label {label!r} is repeated among the distractors", case_id)
                    ok = False
                elif label in seen:
                    self._problem(distractors_line, f"duplicate distractor label {label!r}", case_id)
                    ok = False
                seen.add(label)
        min_prob = section.get("min_prob")
        if min_prob is not None:
            if isinstance(min_prob, bool) or not isinstance(min_prob, (int, float)) or not 0 <= min_prob <= 1:
                self._problem(section.key_lines["min_prob"], f"'clip.min_prob' must be a number in [0, 1], got {min_prob!r}", case_id)
                ok = False
        if not ok or distractors is None:
            return None
        return ClipCheck(expect=expect, distractors=tuple(distractors), min_prob=None if min_prob is None else float(min_prob))

    def _resnet(self, raw: YamlMap, case_id: str | None) -> ResnetCheck | None:
        if "resnet" not in raw or raw["resnet"] is None:
            return None
        section, line = raw["resnet"], raw.key_lines["resnet"]
        if not isinstance(section, YamlMap):
            self._problem(line, "'resnet' must be a mapping with 'expect' (ImageNet class names) and optional 'top_k'", case_id)
            return None
        self._check_keys(section, RESNET_KEYS, "'resnet'", case_id)
        expect_line = section.key_lines.get("expect", line)
        if "expect" not in section:
            self._problem(line, "missing 'resnet.expect' (one or more ImageNet class names)", case_id)
            return None
        expect = self._string_list(section["expect"], expect_line, "'resnet.expect'", case_id)
        if expect is None:
            return None
        categories = imagenet_categories()
        known = set(categories)
        valid = True
        for name in expect:
            if name not in known:
                valid = False
                hint = suggest(name, categories) or " (see torchvision's ResNet50_Weights.IMAGENET1K_V2.meta['categories'])"
                self._problem(expect_line, f"{name!r} is not an ImageNet class name{hint}", case_id)
        top_k = self._integer(
            (section.get("top_k"), section.key_lines.get("top_k", line)), "resnet.top_k", 1, case_id, minimum=1, maximum=1000
        )
        return ResnetCheck(expect=tuple(expect), top_k=top_k) if valid else None

    def _tags(self, found: tuple[Any, int], case_id: str | None) -> tuple[str, ...]:
        raw, line = found
        if raw is None:
            return ()
        tags = self._string_list(raw, line, "'tags'", case_id)
        if tags is None:
            return ()
        for tag in tags:
            if not TAG_PATTERN.match(tag) or tag in RESERVED_TAGS:
                self._problem(
                    line,
                    f"invalid tag {tag!r}: tags become pytest markers, so they start with a letter or '_', "
                    "hold only letters, digits, '_' and '-', and are not one of "
                    + ", ".join(sorted(RESERVED_TAGS)),
                    case_id,
                )
        return tuple(dict.fromkeys(tags))

    def _reason(self, raw: YamlMap, key: str, case_id: str | None) -> str | None:
        if key not in raw or raw[key] is None:
            return None
        reason = raw[key]
        if not isinstance(reason, str) or not reason.strip():
            self._problem(raw.key_lines[key], f"'{key}' takes a reason, e.g. {key}: \"flaky on fp16\"", case_id)
            return None
        return reason


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
