"""`python -m harness import geneval`: GenEval's evaluation_metadata.jsonl as case files of `objects:` checks.

GenEval (Ghosh et al., 2023) scores text-to-image models on 553 prompts in six tags (single object, two objects,
counting, colours, position, colour attribution) with an object detector. Imported, each tag is one case file
whose cases say the same with this harness's `objects:` judge, so `pytest DIR` runs GenEval with the image
cache, batching, the report, baselines and seeds. The metadata file is untrusted input: each line is checked,
and a line that is not what GenEval writes is refused with its line number; the others are still imported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cases.case_file import MAX_ID_LENGTH, TAG_PATTERN
from harness.common.atomic import atomic_write_text

# GenEval's own generation settings (generation/diffusers_generate.py): 4 images per prompt, 50 steps, scale 9.
DEFAULT_SEEDS = 4
GENEVAL_STEPS = 50
GENEVAL_GUIDANCE = 9.0
# evaluate_images.py: counting prompts are judged with a stricter detection confidence than the others.
COUNTING_TAG = "counting"
COUNTING_THRESHOLD = 0.9
MAX_LINE_BYTES = 64 * 1024  # a GenEval line is under 300 bytes; far longer is not one


class GenevalImportError(Exception):
    """The metadata file as a whole cannot be imported, or the output cannot be written."""


@dataclass(frozen=True)
class GenevalObject:
    name: str
    count: int
    color: str | None = None
    position: tuple[str, int] | None = None  # (relation, index of the other object in `include`)


@dataclass(frozen=True)
class GenevalPrompt:
    line: int
    tag: str
    prompt: str
    include: tuple[GenevalObject, ...]
    exclude: tuple[tuple[str, int], ...] = ()  # (class, count): fewer than count of it


@dataclass
class ImportSummary:
    files: dict[str, int] = field(default_factory=dict)  # tag -> cases written
    refusals: list[str] = field(default_factory=list)


def read_metadata(path: Path) -> tuple[list[GenevalPrompt], list[str]]:
    """The valid prompts of a GenEval metadata file, and a message for each line refused."""
    from harness.common.json_input import loads

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GenevalImportError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = raw[: exc.start].count(b"\n") + 1
        raise GenevalImportError(f"{path}:{where}: not UTF-8 text; GenEval's metadata is UTF-8 JSON lines") from None
    prompts, refusals = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            if len(line) > MAX_LINE_BYTES:
                raise ValueError(f"the line is {len(line)} characters long; a GenEval line is a few hundred")
            prompts.append(_prompt(number, loads(line)))
        except ValueError as exc:  # json.JSONDecodeError and ShapeError are ValueErrors
            refusals.append(f"{path}:{number}: {exc}; the line is left out")
    if not prompts and not refusals:
        raise GenevalImportError(f"{path}: no prompts in the file; is it GenEval's evaluation_metadata.jsonl?")
    return prompts, refusals


def _prompt(line: int, data: Any) -> GenevalPrompt:
    from harness.common.json_input import Fields, ShapeError, any_value, list_of, text

    fields = Fields(data)
    _only(fields, ("tag", "prompt", "include", "exclude"))
    tag = fields.get("tag", text())
    if not TAG_PATTERN.match(tag):
        raise ShapeError("tag", "a word such as 'counting'", tag)
    prompt = fields.get("prompt", text())
    if not prompt.strip():
        raise ShapeError("prompt", "a prompt", prompt)
    include = fields.get("include", list_of(any_value(), min_length=1))
    objects = tuple(_object(Fields(item, f"include[{i}]"), len(include), i) for i, item in enumerate(include))
    excluded = []
    for i, item in enumerate(fields.get("exclude", list_of(any_value()), ())):
        entry = Fields(item, f"exclude[{i}]")
        _only(entry, ("class", "count"))
        name, count = _name_and_count(entry)
        if name not in {obj.name for obj in objects}:
            raise ShapeError(entry.field("class"), "one of the included objects' classes", name)
        excluded.append((name, count))
    return GenevalPrompt(line, tag, prompt, objects, tuple(excluded))


def _name_and_count(entry: Any) -> tuple[str, int]:
    from harness.common.json_input import ShapeError, text, whole

    name = entry.get("class", text())
    if not name.strip():
        raise ShapeError(entry.field("class"), "an object name", name)
    return name, entry.get("count", whole(1, 100))


def _object(entry: Any, size: int, index: int) -> GenevalObject:
    from harness.common.json_input import ShapeError, any_value, optional, text
    from harness.judging.geneval_rules import COLORS, RELATIONS

    _only(entry, ("class", "count", "color", "position"))
    name, count = _name_and_count(entry)
    color = entry.get("color", optional(text()), None)
    if color is not None and color not in COLORS:
        raise ShapeError(entry.field("color"), "one of " + ", ".join(COLORS), color)
    position = entry.get("position", any_value(), None)
    if position is not None:
        if (
            not isinstance(position, list)
            or len(position) != 2
            or position[0] not in RELATIONS
            or isinstance(position[1], bool)
            or not isinstance(position[1], int)
            or not 0 <= position[1] < size
            or position[1] == index
        ):
            raise ShapeError(
                entry.field("position"),
                f"[relation, index of another included object] with a relation among {', '.join(RELATIONS)}",
                position,
            )
        position = (position[0], position[1])
    return GenevalObject(name, count, color, position)


def _only(entry: Any, keys: tuple[str, ...]) -> None:
    """GenEval's lines hold these keys and no others: an unknown one is a typo or another format."""
    from harness.common.json_input import ShapeError

    extra = sorted(set(entry.data) - set(keys))
    if extra:
        raise ShapeError(entry.field(extra[0]), "no such field (GenEval's are " + ", ".join(keys) + ")", extra[0])


# ---------------------------------------------------------------------------------------------
# Case files.


def case_id(prompt: str) -> str:
    """A readable id from the prompt: 'a photo of two clocks' -> 'two-clocks' (stable: it is the prompt's)."""
    words = prompt.strip().lower().removeprefix("a photo of ").removeprefix("an ").removeprefix("a ")
    slug = re.sub(r"[^a-z0-9]+", "-", words).strip("-")[: MAX_ID_LENGTH - 4].strip("-")
    return slug or "prompt"


def objects_of(prompt: GenevalPrompt) -> list[dict[str, Any]]:
    """GenEval's include and exclude clauses as `objects:` entries (at least `count`; `exclude` N is at most N-1)."""
    at_most = dict(prompt.exclude)
    entries = []
    for obj in prompt.include:
        entry: dict[str, Any] = {"class": obj.name, "count": obj.count}
        if obj.name in at_most:
            entry["max_count"] = at_most[obj.name] - 1
        if obj.color is not None:
            entry["color"] = obj.color
        if obj.position is not None:
            relation, other = obj.position
            entry["position"] = [relation, prompt.include[other].name]
        entries.append(entry)
    return entries


def case_file_text(tag: str, prompts: list[GenevalPrompt], source: str, seeds: int, min_pass_rate: float | None) -> str:
    """One tag's case file. Every string is written as a JSON string, which YAML reads as the same text."""
    first, last = prompts[0].line, prompts[-1].line
    lines = [
        f"# GenEval {tag!r} prompts ({len(prompts)}), imported by `python -m harness import geneval` from",
        f"# {json.dumps(source)} (lines {first}-{last}). Regenerate rather than edit: ids come from the prompts.",
        "defaults:",
        f"  seeds: {seeds}",
        f"  steps: {GENEVAL_STEPS}",
        f"  guidance_scale: {GENEVAL_GUIDANCE}",
        f"  tags: [geneval, {tag}]",
    ]
    if min_pass_rate is not None:
        lines.append(f"  min_pass_rate: {min_pass_rate!r}")
    lines.append("cases:")
    seen: dict[str, int] = {}
    for prompt in prompts:
        base = case_id(prompt.prompt)
        seen[base] = seen.get(base, 0) + 1
        ident = base if seen[base] == 1 else f"{base}-{seen[base]}"
        lines += [f"  - id: {ident}", f"    prompt: {json.dumps(prompt.prompt, ensure_ascii=False)}", "    objects:"]
        lines.append("      expect:")
        for entry in objects_of(prompt):
            fields = ", ".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in entry.items())
            lines.append(f"        - {{{fields}}}")
        if tag == COUNTING_TAG:
            lines.append(f"      threshold: {COUNTING_THRESHOLD}")
    return "\n".join(lines) + "\n"


def import_geneval(
    metadata: Path, output: Path, seeds: int = DEFAULT_SEEDS, min_pass_rate: float | None = None
) -> ImportSummary:
    """Write one case file per tag under ``output``; the summary lists what was written and what was refused."""
    prompts, refusals = read_metadata(metadata)
    if output.exists() and not output.is_dir():
        raise GenevalImportError(f"-o {output}: is a file; name a directory for the case files")
    by_tag: dict[str, list[GenevalPrompt]] = {}
    for prompt in prompts:
        by_tag.setdefault(prompt.tag, []).append(prompt)
    summary = ImportSummary(refusals=refusals)
    for tag, found in by_tag.items():
        try:
            atomic_write_text(output / f"{tag}.yaml", case_file_text(tag, found, metadata.name, seeds, min_pass_rate))
        except OSError as exc:
            raise GenevalImportError(f"-o {output}: cannot write {tag}.yaml ({exc.strerror or exc})") from None
        summary.files[tag] = len(found)
    return summary
