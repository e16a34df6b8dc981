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


def read_metadata(
    path: Path, colors: tuple[str, ...], relations: tuple[str, ...]
) -> tuple[list[GenevalPrompt], list[str]]:
    """The valid prompts of a GenEval metadata file, and a message for each line refused."""
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
            prompts.append(_prompt(number, json.loads(line), colors, relations))
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            refusals.append(f"{path}:{number}: {exc}; the line is left out")
    if not prompts and not refusals:
        raise GenevalImportError(f"{path}: no prompts in the file; is it GenEval's evaluation_metadata.jsonl?")
    return prompts, refusals


def _prompt(line: int, data: Any, colors: tuple[str, ...], relations: tuple[str, ...]) -> GenevalPrompt:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object with tag, prompt and include")
    tag, prompt = data.get("tag"), data.get("prompt")
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise ValueError(f"field 'tag': expected a word such as 'counting', got {_shown(tag)}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"field 'prompt': expected text, got {_shown(prompt)}")
    include = data.get("include")
    if not isinstance(include, list) or not include:
        raise ValueError(f"field 'include': expected a non-empty list of objects, got {_shown(include)}")
    objects = tuple(
        _object(f"include[{i}]", item, len(include), i, colors, relations) for i, item in enumerate(include)
    )
    exclude = data.get("exclude", [])
    if not isinstance(exclude, list):
        raise ValueError(f"field 'exclude': expected a list, got {_shown(exclude)}")
    excluded = []
    for i, item in enumerate(exclude):
        name, count = _name_and_count(f"exclude[{i}]", item)
        if name not in {obj.name for obj in objects}:
            raise ValueError(f"field 'exclude[{i}].class': {name!r} is not one of the included objects")
        excluded.append((name, count))
    extra = set(data) - {"tag", "prompt", "include", "exclude"}
    if extra:
        raise ValueError(f"unknown field {sorted(extra)[0]!r}; GenEval's lines hold tag, prompt, include and exclude")
    return GenevalPrompt(line, tag, prompt, objects, tuple(excluded))


def _name_and_count(where: str, item: Any) -> tuple[str, int]:
    if not isinstance(item, dict):
        raise ValueError(f"field '{where}': expected an object with class and count, got {_shown(item)}")
    name, count = item.get("class"), item.get("count")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"field '{where}.class': expected an object name, got {_shown(name)}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise ValueError(f"field '{where}.count': expected a whole number from 1 to 100, got {_shown(count)}")
    return name, count


def _object(
    where: str, item: Any, size: int, index: int, colors: tuple[str, ...], relations: tuple[str, ...]
) -> GenevalObject:
    name, count = _name_and_count(where, item)
    color = item.get("color")
    if color is not None and color not in colors:
        raise ValueError(f"field '{where}.color': expected one of {', '.join(colors)}, got {_shown(color)}")
    position = item.get("position")
    if position is not None:
        if (
            not isinstance(position, list)
            or len(position) != 2
            or position[0] not in relations
            or isinstance(position[1], bool)
            or not isinstance(position[1], int)
            or not 0 <= position[1] < size
            or position[1] == index
        ):
            raise ValueError(
                f"field '{where}.position': expected [relation, index of another included object] with a relation "
                f"among {', '.join(relations)}, got {_shown(position)}"
            )
        position = (position[0], position[1])
    extra = set(item) - {"class", "count", "color", "position"}
    if extra:
        raise ValueError(f"field '{where}': unknown key {sorted(extra)[0]!r}")
    return GenevalObject(name, count, color, position)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 60 else text[:57] + "..."


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
    metadata: Path,
    output: Path,
    colors: tuple[str, ...],
    relations: tuple[str, ...],
    seeds: int = DEFAULT_SEEDS,
    min_pass_rate: float | None = None,
) -> ImportSummary:
    """Write one case file per tag under ``output``; the summary lists what was written and what was refused."""
    prompts, refusals = read_metadata(metadata, colors, relations)
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
