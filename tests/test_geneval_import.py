"""`python -m harness import geneval`: GenEval's metadata as case files that check mode and pytest accept.

tests/data/geneval_sample.jsonl holds eight lines of GenEval's prompts/evaluation_metadata.jsonl (MIT licence,
Copyright (c) 2023 Dhruba Ghosh): the first of each of its six tags, a second counting and a second position one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.__main__ import main
from harness.cases.case_file import Case
from harness.cases.case_file import load_case_file as load_with
from harness.judging.builtin import builtin_judges
from harness.judging.objects import ObjectsJudge

SAMPLE = Path(__file__).parent / "data" / "geneval_sample.jsonl"


def load_case_file(path: Path) -> list[Case]:
    """The case file read with the judges a run has: the built-ins and `objects:`."""
    return load_with(path, [*builtin_judges(), ObjectsJudge()])


TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def test_every_tag_becomes_a_case_file(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "geneval"
    assert main(["import", "geneval", str(SAMPLE), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{tag}.yaml" for tag in TAGS)
    assert capsys.readouterr().out.splitlines()[2] == f"{out / 'counting.yaml'}: 2 cases"
    counting = (out / "counting.yaml").read_text()
    assert counting == (
        "# GenEval 'counting' prompts (2), imported by `python -m harness import geneval` from\n"
        '# "geneval_sample.jsonl" (lines 3-7). Regenerate rather than edit: ids come from the prompts.\n'
        "defaults:\n  seeds: 4\n  steps: 50\n  guidance_scale: 9.0\n  tags: [geneval, counting]\n"
        "cases:\n"
        '  - id: two-clocks\n    prompt: "a photo of two clocks"\n    objects:\n      expect:\n'
        '        - {class: "clock", count: 2, max_count: 2}\n      threshold: 0.9\n'
        '  - id: two-bears\n    prompt: "a photo of two bears"\n    objects:\n      expect:\n'
        '        - {class: "bear", count: 2, max_count: 2}\n      threshold: 0.9\n'
    )
    (case,) = load_case_file(out / "position.yaml")[:1]
    assert (case.id, case.tags, case.seeds, case.guidance_scale) == (
        "dog-right-of-a-teddy-bear",
        ("geneval", "position"),
        (0, 1, 2, 3),
        9.0,
    )
    position = (out / "position.yaml").read_text()
    assert '{class: "dog", count: 1, position: ["right of", "teddy bear"]}' in position
    assert '{class: "apple", count: 1, color: "black"}' in (out / "color_attr.yaml").read_text()
    # Ids come from the prompts: importing again writes the same bytes.
    again = tmp_path / "again"
    assert main(["import", "geneval", str(SAMPLE), "-o", str(again), "--seeds", "2", "--min-pass-rate", "0.5"]) == 0
    assert "  seeds: 2\n" in (again / "counting.yaml").read_text()
    assert load_case_file(again / "colors.yaml")[0].min_pass_rate == 0.5


def test_bad_lines_are_refused_by_line_and_the_rest_imported(tmp_path: Path, capsys: Any) -> None:
    lines = [
        *SAMPLE.read_text().splitlines()[:2],
        "not json",
        json.dumps({"tag": "counting", "prompt": "two owls", "include": [{"class": "owl", "count": "two"}]}),
        json.dumps(
            {"tag": "position", "prompt": "x", "include": [{"class": "a", "count": 1, "position": ["near", 0]}]}
        ),
        json.dumps({"tag": "colors", "prompt": "x", "include": [{"class": "a", "count": 1, "color": "mauve"}]}),
        json.dumps({"tag": "bad tag!", "prompt": "x", "include": [{"class": "a", "count": 1}]}),
        json.dumps(
            {
                "tag": "counting",
                "prompt": "x",
                "include": [{"class": "a", "count": 1}],
                "exclude": [{"class": "b", "count": 2}],
            }
        ),
        # A prompt with YAML's and HTML's special characters is written so that it reads back as the same text.
        json.dumps(
            {
                "tag": "single_object",
                "prompt": 'a "quoted" #owl: {x} <b>\nline',
                "include": [{"class": "owl", "count": 1}],
            }
        ),
    ]
    lines.append('{"tag": "single_object", "prompt": "\\ud800 alone", "include": [{"class": "owl", "count": 1}]}')
    source = tmp_path / "meta.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["import", "geneval", str(source), "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    expected = [
        (3, "Expecting value: line 1 column 1 (char 0)"),
        (4, "field 'include[0].count': expected a whole number from 1 to 100, got 'two'"),
        (
            5,
            "field 'include[0].position': expected [relation, index of another included object] with a relation "
            "among left of, right of, above, below, got a list of 2",
        ),
        (
            6,
            "field 'include[0].color': expected one of red, orange, yellow, green, blue, purple, pink, brown, black, "
            "white, got 'mauve'",
        ),
        (7, "field 'tag': expected a word such as 'counting', got 'bad tag!'"),
        (8, "field 'exclude[0].class': expected one of the included objects' classes, got 'b'"),
        # Read as untrusted JSON, as compare and merge read theirs: a lone surrogate could not be written back.
        (10, "a string that is not valid Unicode (a lone surrogate escape) at prompt"),
    ]
    assert err[:-1] == [
        f"python -m harness import geneval: refused: {source}:{line}: {what}; the line is left out"
        for line, what in expected
    ]
    assert (
        err[-1]
        == "python -m harness import geneval: 7 part(s) of the input refused (listed above); the rest was written"
    )
    cases = load_case_file(out / "single_object.yaml")
    assert [case.prompt for case in cases] == ["a photo of a bench", 'a "quoted" #owl: {x} <b>\nline']
    assert (out / "two_object.yaml").is_file() and not (out / "counting.yaml").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the file"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"\n\n", "no prompts in the file"),
    ],
)
def test_unreadable_metadata_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: Any, content: bytes | None, message: str
) -> None:
    source = tmp_path / "meta.jsonl"
    if content is not None:
        source.write_bytes(content)
    assert main(["import", "geneval", str(source), "-o", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m harness import geneval: ") and message in line
    assert not (tmp_path / "out").exists()


def test_imported_files_pass_check_mode(pytester: pytest.Pytester) -> None:
    out = pytester.path / "geneval"
    assert main(["import", "geneval", str(SAMPLE), "-o", str(out)]) == 0
    result = pytester.runpytest("geneval", "--t2i-check")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*t2i-check: 8 cases validated*"])
