"""Case-file validation: every problem as `path:line: case 'id': what`, all of them at once, no traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.cases.case_file import (
    DEFAULTS_KEYS,
    CaseFileError,
    case_keys,
    load_case_file,
)
from harness.judging.clip import KEYS as CLIP_KEYS
from harness.judging.clip import ClipCheck
from harness.judging.resnet import KEYS as RESNET_KEYS
from harness.judging.resnet import ResnetCheck

REPO_CASES = Path(__file__).resolve().parent.parent / "cases"

GOOD_CASE = """\
  - id: owl
    prompt: "an owl"
    clip: {expect: "an owl", distractors: ["a hawk"]}
"""


def problems(tmp_path: Path, text: str, name: str = "suite.yaml") -> list[str]:
    """The problem lines load_case_file reports for ``text``, with the file shown as ``name``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(CaseFileError) as info:
        load_case_file(path)
    assert info.value.path == path
    rendered = str(info.value)
    assert rendered.splitlines()[0] == f"{path}: {len(info.value.problems)} problem" + (
        "s in this case file:" if len(info.value.problems) != 1 else " in this case file:"
    )
    assert "Traceback" not in rendered
    return [p.format(name) for p in info.value.problems]


def one_case(body: str) -> str:
    """A file with one case whose keys are ``body`` (indented under '- ')."""
    return "cases:\n  - " + textwrap.indent(textwrap.dedent(body), "    ").lstrip()


# -- the file as a whole -----------------------------------------------------------------------


def test_yaml_syntax_error_gives_parser_line_and_column(tmp_path: Path) -> None:
    text = 'cases:\n  - id: owl\n    prompt: "an owl\n    clip: {expect: a, distractors: [b]}\n'
    assert problems(tmp_path, text) == [
        "suite.yaml:5: YAML syntax error at line 5, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar at line 3, column 13)"
    ]


def test_bad_indentation_and_tabs_are_syntax_errors(tmp_path: Path) -> None:
    assert problems(tmp_path, "cases:\n  - id: owl\n   prompt: x\n") == [
        "suite.yaml:3: YAML syntax error at line 3, column 4: expected <block end>, but found "
        "'<block mapping start>' (while parsing a block collection at line 2, column 3)"
    ]
    assert problems(tmp_path, "cases:\n\t- id: owl\n") == [
        "suite.yaml:2: YAML syntax error at line 2, column 1: found character '\\t' that cannot start any token "
        "(while scanning for the next token)"
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert problems(tmp_path, text) == [
        "suite.yaml:1: the file is empty (or holds only comments); a case file is a mapping whose 'cases:' key "
        "holds a list of cases, each starting with '- id: ...'"
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- id: owl\n  prompt: x\n", "a list"), ("just words\n", "the text 'just words'"), ("42\n", "the number 42")],
)
def test_root_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    assert problems(tmp_path, text) == [
        f"suite.yaml:1: the top level is {kind}, not a mapping; a case file is a mapping whose 'cases:' key "
        "holds a list of cases, each starting with '- id: ...'"
    ]


def test_mapping_without_cases_suggests_the_near_miss(tmp_path: Path) -> None:
    text = "defaults:\n  steps: 2\ncase:\n" + GOOD_CASE
    assert problems(tmp_path, text) == [
        "suite.yaml:1: no top-level 'cases:' key; a case file is a mapping whose 'cases:' key holds a list of "
        "cases, each starting with '- id: ...'",
        "suite.yaml:3: unknown key 'case' at the top level (did you mean 'cases'?); allowed keys: defaults, cases",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{id: owl}", "'cases' must be a list of cases (each starting with '- id: ...'), got a mapping"),
        ("owl", "'cases' must be a list of cases (each starting with '- id: ...'), got the text 'owl'"),
        ("", "'cases' is empty; add at least one case under it ('- id: ...')"),
        ("[]", "'cases' is empty; add at least one case under it ('- id: ...')"),
    ],
)
def test_cases_that_is_not_a_list(tmp_path: Path, value: str, message: str) -> None:
    assert problems(tmp_path, f"defaults: {{steps: 2}}\ncases: {value}\n") == [f"suite.yaml:2: {message}"]


def test_item_of_cases_that_is_not_a_mapping(tmp_path: Path) -> None:
    text = "cases:\n" + GOOD_CASE + "  - just a prompt\n"
    assert problems(tmp_path, text) == [
        "suite.yaml:5: case #2: this item of 'cases' is the text 'just a prompt', not a mapping; a case is a "
        "mapping with at least 'id', 'prompt' and a check (such as 'clip:')"
    ]


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_bytes(b"cases:\n  - id: owl\n    prompt: caf\xe9\n")
    with pytest.raises(CaseFileError) as info:
        load_case_file(path)
    assert [p.format("suite.yaml") for p in info.value.problems] == [
        "suite.yaml:3: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    ]


def test_unreadable_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.mkdir()
    with pytest.raises(CaseFileError) as info:
        load_case_file(path)
    assert [p.format("suite.yaml") for p in info.value.problems] == [
        "suite.yaml:1: cannot read the file: Is a directory"
    ]


def test_byte_order_mark_and_crlf_line_ends_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_bytes(b"\xef\xbb\xbfcases:\r\n" + GOOD_CASE.replace("\n", "\r\n").encode())
    assert [case.id for case in load_case_file(path)] == ["owl"]


def test_duplicate_mapping_key(tmp_path: Path) -> None:
    text = one_case('id: owl\nprompt: "an owl"\nprompt: "a hawk"\nclip: {expect: a, distractors: [b]}\n')
    assert problems(tmp_path, text) == [
        "suite.yaml:4: key 'prompt' appears twice in the same mapping (first on line 3); keep one"
    ]


# -- unknown keys ------------------------------------------------------------------------------


def test_unknown_keys_at_every_level_with_near_miss_suggestions(tmp_path: Path) -> None:
    text = """\
        defaults:
          step: 2
        cases:
          - id: owl
            prompt: "an owl"
            negtive_prompt: "blurry"
            clip:
              expect: "an owl"
              distractors: ["a hawk"]
              minprob: 0.5
            resnet:
              expect: ["great grey owl"]
              topk: 5
        extra: 1
        """
    assert problems(tmp_path, text) == [
        "suite.yaml:2: unknown key 'step' in 'defaults' (did you mean 'steps'?); allowed keys: "
        + ", ".join(DEFAULTS_KEYS),
        "suite.yaml:6: case 'owl': unknown key 'negtive_prompt' in a case (did you mean 'negative_prompt'?); "
        "allowed keys: " + ", ".join(case_keys(("clip", "resnet"))),
        "suite.yaml:10: case 'owl': unknown key 'minprob' in 'clip' (did you mean 'min_prob'?); allowed keys: "
        + ", ".join(CLIP_KEYS),
        "suite.yaml:13: case 'owl': unknown key 'topk' in 'resnet' (did you mean 'top_k'?); allowed keys: "
        + ", ".join(RESNET_KEYS),
        "suite.yaml:14: unknown key 'extra' at the top level; allowed keys: defaults, cases",
    ]


def test_misplaced_keys_say_where_they_belong(tmp_path: Path) -> None:
    text = """\
        defaults:
          prompt: "an owl"
        cases:
          - id: owl
            prompt: "an owl"
            expect: "an owl"
            clip: {expect: "an owl", distractors: ["a hawk"]}
        """
    assert problems(tmp_path, text) == [
        f"suite.yaml:2: 'prompt' cannot be a default; set it in each case (defaults take: {', '.join(DEFAULTS_KEYS)})",
        "suite.yaml:6: case 'owl': unknown key 'expect' in a case; it belongs under 'clip:' or 'resnet:'",
    ]


# -- prompt and the CLIP check -----------------------------------------------------------------


def test_missing_or_empty_prompt(tmp_path: Path) -> None:
    text = """\
        cases:
          - id: no-prompt
            clip: {expect: "an owl", distractors: ["a hawk"]}
          - id: empty-prompt
            prompt: "   "
            clip: {expect: "an owl", distractors: ["a hawk"]}
          - id: null-prompt
            prompt:
            clip: {expect: "an owl", distractors: ["a hawk"]}
          - id: number-prompt
            prompt: 1984
            clip: {expect: "an owl", distractors: ["a hawk"]}
        """
    assert problems(tmp_path, text) == [
        "suite.yaml:2: case 'no-prompt': missing 'prompt'; e.g. prompt: \"an owl on a branch\"",
        "suite.yaml:5: case 'empty-prompt': 'prompt' is empty; write the text it should hold",
        "suite.yaml:8: case 'null-prompt': missing 'prompt'; e.g. prompt: \"an owl on a branch\"",
        "suite.yaml:11: case 'number-prompt': 'prompt' must be text, but YAML reads 1984 as the number 1984; "
        'put it in quotes: "1984"',
    ]


def test_missing_clip_section_and_missing_expect(tmp_path: Path) -> None:
    text = """\
        cases:
          - id: no-clip
            prompt: "an owl"
          - id: no-expect
            prompt: "an owl"
            clip:
              distractors: ["a hawk"]
          - id: clip-list
            prompt: "an owl"
            clip: ["an owl", "a hawk"]
        """
    assert problems(tmp_path, text) == [
        "suite.yaml:2: case 'no-clip': missing 'clip' section: add 'clip:' with 'expect' (the label CLIP should "
        "pick) and 'distractors' (labels it could confuse with it); a case needs at least one check, this one or "
        "'resnet:'",
        "suite.yaml:6: case 'no-expect': missing 'clip.expect': the label CLIP should pick, e.g. expect: \"an owl\"",
        "suite.yaml:10: case 'clip-list': 'clip' must be a mapping with 'expect' and 'distractors', got a list",
    ]


def test_no_distractors(tmp_path: Path) -> None:
    text = """\
        cases:
          - id: missing
            prompt: "an owl"
            clip:
              expect: "an owl"
          - id: empty
            prompt: "an owl"
            clip:
              expect: "an owl"
              distractors: []
          - id: blank-label
            prompt: "an owl"
            clip:
              expect: "an owl"
              distractors:
                - "a hawk"
                - ""
        """
    needs = 'needs at least one label CLIP could confuse with the intended one, e.g. distractors: ["a hawk"]'
    assert problems(tmp_path, text) == [
        f"suite.yaml:4: case 'missing': 'clip.distractors' {needs}",
        f"suite.yaml:10: case 'empty': 'clip.distractors' {needs}",
        "suite.yaml:17: case 'blank-label': 'clip.distractors' holds an empty label; remove it or fill it in",
    ]


def test_intended_label_among_distractors_and_duplicate_labels(tmp_path: Path) -> None:
    text = """\
        cases:
          - id: owl
            prompt: "an owl"
            clip:
              expect: "an owl"
              distractors:
                - "a hawk"
                - "An  Owl"
                - "a hawk"
                - "A HAWK "
        """
    assert problems(tmp_path, text) == [
        "suite.yaml:8: case 'owl': the intended label 'an owl' (clip.expect, line 5) is repeated among the "
        "distractors; CLIP ignores case and spacing, so remove it or reword it",
        "suite.yaml:9: case 'owl': duplicate label 'a hawk' in 'clip.distractors' (also on line 7); CLIP ignores "
        "case and spacing, so remove one",
        "suite.yaml:10: case 'owl': duplicate label 'A HAWK ' in 'clip.distractors' (also on line 7); CLIP "
        "ignores case and spacing, so remove one",
    ]


def test_labels_that_yaml_reads_as_other_types_get_a_quoting_hint(tmp_path: Path) -> None:
    text = one_case("id: owl\nprompt: an owl\nclip:\n  expect: yes\n  distractors: [no, 3.5]\n")
    assert problems(tmp_path, text) == [
        "suite.yaml:5: case 'owl': 'clip.expect' must be text, but YAML reads yes as the boolean true; "
        'put it in quotes: "yes"',
        "suite.yaml:6: case 'owl': each label in 'clip.distractors' must be text, but YAML reads no as the "
        'boolean false; put it in quotes: "no"',
        "suite.yaml:6: case 'owl': each label in 'clip.distractors' must be text, but YAML reads 3.5 as the "
        'number 3.5; put it in quotes: "3.5"',
    ]


# -- ids ---------------------------------------------------------------------------------------


def test_duplicate_case_ids_even_when_the_first_is_broken(tmp_path: Path) -> None:
    text = """\
        cases:
          - id: owl
            prompt: ""
            clip: {expect: "an owl", distractors: ["a hawk"]}
          - id: owl
            prompt: "an owl"
            clip: {expect: "an owl", distractors: ["a hawk"]}
          - id: OWL
            prompt: "an owl"
            clip: {expect: "an owl", distractors: ["a hawk"]}
        """
    assert problems(tmp_path, text) == [
        "suite.yaml:3: case 'owl': 'prompt' is empty; write the text it should hold",
        "suite.yaml:5: case 'owl': duplicate case id: line 2 already uses it; ids must be unique within a file",
        "suite.yaml:8: case 'OWL': case id clashes with 'owl' on line 2: ids that differ only in case would share "
        "an image file on macOS and Windows; rename one",
    ]


@pytest.mark.parametrize(
    ("case_id", "suggestion"),
    [
        ("../../x", "x"),
        ("/etc/passwd", "etc-passwd"),
        ("a/b", "a-b"),
        ("a\\\\b", "a-b"),
        (".hidden", "hidden"),
        ("-x", "x"),
        ("_x", "x"),
        ("my owl", "my-owl"),
        ("owl:1", "owl-1"),
        ("owl[seed=0]", "owl-seed-0"),
        ("owl\\n", "owl"),
        ("", "my-case"),
        ("<script>", "script"),
        ("hibou-ç", "hibou"),
    ],
)
def test_ids_outside_the_safe_pattern_are_rejected(tmp_path: Path, case_id: str, suggestion: str) -> None:
    text = one_case(f'id: "{case_id}"\nprompt: "an owl"\nclip: {{expect: "an owl", distractors: ["a hawk"]}}\n')
    shown = case_id.replace("\\\\", "\\").replace("\\n", "\n")
    assert problems(tmp_path, text) == [
        f"suite.yaml:2: case {shown!r}: invalid id {shown!r}: an id starts with a letter or digit and holds only "
        "letters, digits, '-', '_' and '.', because it names the test and its image file; "
        f"try {suggestion!r}"
    ]


def test_missing_non_text_and_overlong_ids(tmp_path: Path) -> None:
    long_id = "a" * 101
    text = f"""\
        cases:
          - prompt: "an owl"
            clip: {{expect: "an owl", distractors: ["a hawk"]}}
          - id: yes
            prompt: "an owl"
            clip: {{expect: "an owl", distractors: ["a hawk"]}}
          - id: {long_id}
            prompt: "an owl"
            clip: {{expect: "an owl", distractors: ["a hawk"]}}
        """
    assert problems(tmp_path, text) == [
        "suite.yaml:2: case #1: missing 'id'; every case needs a unique id, e.g. 'id: watercolor-owl' (letters, "
        "digits, '-', '_' and '.')",
        "suite.yaml:4: case #2: 'id' must be text, but YAML reads yes as the boolean true; put it in quotes: \"yes\"",
        f"suite.yaml:7: case {long_id!r}: the id is 101 characters long; keep it to 100",
    ]


@pytest.mark.parametrize("case_id", ["owl", "Owl_2", "a.b-c_d", "0", "2024-01-01", "v1.5", "a" * 100])
def test_ids_inside_the_pattern_are_accepted(tmp_path: Path, case_id: str) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(one_case(f'id: "{case_id}"\nprompt: an owl\nclip: {{expect: an owl, distractors: [a hawk]}}\n'))
    assert [case.id for case in load_case_file(path)] == [case_id]


# -- types and ranges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_value", "message"),
    [
        ("steps: 0", "'steps' must be between 1 and 10000 (e.g. 25), got 0"),
        ("steps: -3", "'steps' must be between 1 and 10000 (e.g. 25), got -3"),
        ("steps: 2.5", "'steps' must be a whole number (e.g. 25), got the number 2.5"),
        ("steps: '25'", "'steps' must be a whole number (e.g. 25), got the text '25'"),
        ("steps: true", "'steps' must be a whole number (e.g. 25), got the boolean true"),
        (
            "guidance_scale: -0.5",
            "'guidance_scale' must be >= 0 (7.5 is usual; 0 or 1 turns guidance off), got -0.5",
        ),
        ("guidance_scale: high", "'guidance_scale' must be a number such as 7.5, got the text 'high'"),
        ("guidance_scale: .nan", "'guidance_scale' must be a number such as 7.5, got the number nan"),
        ("guidance_scale: .inf", "'guidance_scale' must be a number such as 7.5, got the number inf"),
        (
            "width: 513",
            "'width' must be a positive multiple of 8 (the VAE works in 8-pixel blocks), got 513; "
            "the nearest are 512 and 520",
        ),
        ("height: 0", "'height' must be a positive multiple of 8 (the VAE works in 8-pixel blocks), got 0; e.g. 512"),
        (
            "height: -64",
            "'height' must be a positive multiple of 8 (the VAE works in 8-pixel blocks), got -64; e.g. 512",
        ),
        (
            "width: 512px",
            "'width' must be a whole number of pixels, a multiple of 8 such as 512; got the text '512px'",
        ),
        (
            "seeds: []",
            "'seeds' must be a number of seeds (8 runs seeds 0 to 7) or a non-empty list of seeds, e.g. [0, 1, 2]; "
            "got a list",
        ),
        (
            "seeds: 0-3",
            "'seeds' must be a number of seeds (8 runs seeds 0 to 7) or a non-empty list of seeds, e.g. [0, 1, 2]; "
            "got the text '0-3'",
        ),
        ("seeds: [-1]", "seed -1 is out of range; seeds are whole numbers from 0 to 9223372036854775807 (2**63 - 1)"),
        (
            "seeds: [9223372036854775808]",
            "seed 9223372036854775808 is out of range; seeds are whole numbers from 0 to 9223372036854775807 "
            "(2**63 - 1)",
        ),
        (
            "seeds: [1.0]",
            "seed 1.0 is not a whole number; seeds are whole numbers from 0 to 9223372036854775807 (2**63 - 1)",
        ),
        (
            "seeds: [yes]",
            "seed yes is not a whole number; seeds are whole numbers from 0 to 9223372036854775807 (2**63 - 1)",
        ),
        ("seeds: [3, 3]", "seed 3 is listed twice; remove the repeat"),
        ("skip: true", "'skip' takes a reason, e.g. skip: \"flaky on fp16\"; got the boolean true"),
        ("xfail: ''", "'xfail' takes a reason, e.g. xfail: \"flaky on fp16\"; got the text ''"),
    ],
)
def test_wrong_types_and_ranges(tmp_path: Path, key_value: str, message: str) -> None:
    text = one_case(f'id: owl\nprompt: "an owl"\nclip: {{expect: "an owl", distractors: ["a hawk"]}}\n{key_value}\n')
    assert problems(tmp_path, text) == [f"suite.yaml:5: case 'owl': {message}"]


@pytest.mark.parametrize(
    ("key_value", "message"),
    [
        ("min_prob: 1.5", "'clip.min_prob' must be a probability in [0, 1], such as 0.5; got the number 1.5"),
        ("min_prob: -0.01", "'clip.min_prob' must be a probability in [0, 1], such as 0.5; got the number -0.01"),
        ("min_prob: half", "'clip.min_prob' must be a probability in [0, 1], such as 0.5; got the text 'half'"),
    ],
)
def test_min_prob_range(tmp_path: Path, key_value: str, message: str) -> None:
    text = one_case(f'id: owl\nprompt: "an owl"\nclip:\n  expect: "an owl"\n  distractors: ["a hawk"]\n  {key_value}\n')
    assert problems(tmp_path, text) == [f"suite.yaml:7: case 'owl': {message}"]


@pytest.mark.parametrize(
    ("top_k", "message"),
    [
        ("0", "'resnet.top_k' must be between 1 and 1000 (1 to 5 is usual), got 0"),
        ("1001", "'resnet.top_k' must be between 1 and 1000 (1 to 5 is usual), got 1001"),
        ("2.0", "'resnet.top_k' must be a whole number (1 to 5 is usual), got the number 2.0"),
    ],
)
def test_top_k_range(tmp_path: Path, top_k: str, message: str) -> None:
    text = one_case(
        'id: owl\nprompt: "an owl"\nclip: {expect: "an owl", distractors: ["a hawk"]}\n'
        f"resnet:\n  expect: [great grey owl]\n  top_k: {top_k}\n"
    )
    assert problems(tmp_path, text) == [f"suite.yaml:7: case 'owl': {message}"]


def test_boundary_values_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(
        one_case(
            'id: owl\nprompt: "an owl"\nsteps: 1\nguidance_scale: 0\nseeds: [0, 9223372036854775807]\n'
            "width: 8\nheight: 1024\n"
            'clip: {expect: "an owl", distractors: ["a hawk"], min_prob: 0}\n'
            "resnet: {expect: [great grey owl], top_k: 1000}\n"
        )
    )
    (case,) = load_case_file(path)
    assert (case.steps, case.guidance_scale, case.seeds, case.width, case.height) == (1, 0.0, (0, 2**63 - 1), 8, 1024)
    assert case.checks["clip"].min_prob == 0.0
    assert case.checks.get("resnet") == ResnetCheck(expect=("great grey owl",), top_k=1000)
    path.write_text(
        one_case('id: owl\nprompt: "an owl"\nclip: {expect: "an owl", distractors: ["a hawk"], min_prob: 1}')
    )
    assert load_case_file(path)[0].checks["clip"].min_prob == 1.0


def test_seed_problems_point_at_the_seed_line(tmp_path: Path) -> None:
    text = one_case(
        'id: owl\nprompt: "an owl"\nclip: {expect: "an owl", distractors: ["a hawk"]}\nseeds:\n  - 1\n  - -2\n  - 1\n'
    )
    assert problems(tmp_path, text) == [
        "suite.yaml:7: case 'owl': seed -2 is out of range; seeds are whole numbers from 0 to 9223372036854775807 "
        "(2**63 - 1)",
        "suite.yaml:8: case 'owl': seed 1 is listed twice (also on line 6); remove the repeat",
    ]


def test_problems_in_defaults_are_reported_once_not_per_case(tmp_path: Path) -> None:
    text = """\
        defaults:
          steps: 0
          seeds: [0, -1]
        cases:
          - id: owl
            prompt: "an owl"
            clip: {expect: "an owl", distractors: ["a hawk"]}
          - id: hawk
            prompt: "a hawk"
            clip: {expect: "a hawk", distractors: ["an owl"]}
            steps: -1
        """
    assert problems(tmp_path, text) == [
        "suite.yaml:2: 'defaults.steps' must be between 1 and 10000 (e.g. 25), got 0",
        "suite.yaml:3: seed -1 is out of range; seeds are whole numbers from 0 to 9223372036854775807 (2**63 - 1)",
        "suite.yaml:11: case 'hawk': 'steps' must be between 1 and 10000 (e.g. 25), got -1",
    ]


def test_invalid_tags(tmp_path: Path) -> None:
    text = one_case(
        'id: owl\nprompt: "an owl"\nclip: {expect: "an owl", distractors: ["a hawk"]}\n'
        "tags:\n  - fast\n  - 2x\n  - skip\n  - 7\n  - _private\n"
    )
    rule = (
        "tags become pytest markers, so they start with a letter, hold only letters, digits, '_' and '-', "
        "and are none of False, None, True, and, filterwarnings, not, or, parametrize, skip, skipif, usefixtures, "
        "xfail"
    )
    assert problems(tmp_path, text) == [
        f"suite.yaml:7: case 'owl': invalid tag '2x': {rule}; try 't_2x'",
        f"suite.yaml:8: case 'owl': invalid tag 'skip': {rule}; try 't_skip'",
        "suite.yaml:9: case 'owl': each tag must be text, but YAML reads 7 as the number 7; put it in quotes: \"7\"",
        # pytest refuses marker names that start with '_' (it would fail the whole run at collection).
        f"suite.yaml:10: case 'owl': invalid tag '_private': {rule}; try 't_private'",
    ]


def test_a_tag_accepted_here_is_accepted_by_pytest(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        suite='cases:\n  - id: owl\n    prompt: "an owl"\n    clip: {expect: "an owl", distractors: ["a hawk"]}\n'
        "    tags: [a, A_b-c, z9]\n",
    )
    result = pytester.runpytest("--collect-only", "-q", "-m", "A_b-c or z9", "--strict-markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["suite.yaml::owl[[]seed=0[]]"])


def test_lone_surrogates_are_refused_on_their_line(tmp_path: Path) -> None:
    text = one_case('id: owl\nprompt: "an owl \\ud800"\nclip:\n  expect: "an owl"\n  distractors: ["a \\udfff hawk"]\n')
    message = (
        "the text holds U+{}, a lone surrogate (from a \\u escape), which is not a character; remove it, or write "
        "the character itself (or its \\U00XXXXXX escape)"
    )
    assert problems(tmp_path, text) == [
        f"suite.yaml:3: {message.format('D800')}",
        f"suite.yaml:6: {message.format('DFFF')}",
    ]


def test_a_lone_surrogate_is_a_collection_error_in_both_modes(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml", suite='cases:\n  - id: owl\n    prompt: "\\ud800"\n    clip: {expect: a, distractors: [b]}\n'
    )
    for mode, code in (([], pytest.ExitCode.INTERRUPTED), (["--t2i-check"], pytest.ExitCode.TESTS_FAILED)):
        result = pytester.runpytest("suite.yaml", *mode)
        assert result.ret == code
        result.stdout.fnmatch_lines(["*suite.yaml:3: the text holds U+D800, a lone surrogate*"])
        assert "INTERNALERROR" not in result.stdout.str() and "TypeError" not in result.stdout.str()


@pytest.mark.parametrize("side", ["width", "height"])
def test_sizes_above_the_largest_a_pipeline_can_use_are_refused(tmp_path: Path, side: str) -> None:
    text = one_case(f'id: owl\nprompt: "an owl"\nclip: {{expect: a, distractors: [b]}}\n{side}: 65536\n')
    assert problems(tmp_path, text) == [
        f"suite.yaml:5: case 'owl': '{side}' is 65536 pixels; the largest size a supported pipeline can use is 4096 "
        "(SD 1.5 works at 512, SDXL at 1024)"
    ]
    ok = one_case(f'id: owl\nprompt: "an owl"\nclip: {{expect: a, distractors: [b]}}\n{side}: 4096\n')
    (tmp_path / "ok.yaml").write_text(ok)
    assert getattr(load_case_file(tmp_path / "ok.yaml")[0], side) == 4096


def test_a_case_file_over_10_mb_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    case = '  - {id: c%d, prompt: "an owl", clip: {expect: a, distractors: [b]}}\n'
    # About 11 MB, ending in a syntax error: parsing it (about 10 s) would report that too.
    path.write_text("cases:\n" + "".join(case % i for i in range(170_000)) + "  - [unclosed\n")
    with pytest.raises(CaseFileError) as info:
        load_case_file(path)
    megabytes = path.stat().st_size / 2**20
    assert [p.format("huge.yaml") for p in info.value.problems] == [
        f"huge.yaml:1: the file is {megabytes:.1f} MB; case files are limited to 10 MB (parsing is slow beyond "
        "that): split it into several files"
    ]


# -- ImageNet names ----------------------------------------------------------------------------


def test_unknown_imagenet_names_suggest_the_closest_real_ones(tmp_path: Path) -> None:
    text = one_case(
        'id: owl\nprompt: "an owl"\nclip: {expect: "an owl", distractors: ["a hawk"]}\n'
        "resnet:\n  expect:\n    - gray owl\n    - Red Fox\n    - tabby\n    - xyzzy\n    - tabby\n"
    )
    assert problems(tmp_path, text) == [
        "suite.yaml:7: case 'owl': 'gray owl' is not an ImageNet class name (did you mean 'great grey owl' or "
        "'grey whale' or 'grey fox'?)",
        "suite.yaml:8: case 'owl': 'Red Fox' is not an ImageNet class name (did you mean 'red fox' or 'grey fox' "
        "or 'red wolf'?)",
        "suite.yaml:10: case 'owl': 'xyzzy' is not an ImageNet class name (see torchvision's "
        "ResNet50_Weights.IMAGENET1K_V2.meta['categories'])",
        "suite.yaml:11: case 'owl': 'tabby' is listed twice in 'resnet.expect' (also on line 9)",
    ]


def test_resnet_section_needs_class_names(tmp_path: Path) -> None:
    text = one_case(
        'id: owl\nprompt: "an owl"\nclip: {expect: "an owl", distractors: ["a hawk"]}\nresnet: {expect: []}\n'
    )
    assert problems(tmp_path, text) == [
        "suite.yaml:5: case 'owl': 'resnet.expect' needs at least one ImageNet class name, e.g. "
        'expect: ["great grey owl"]'
    ]


# -- YAML features that must not get through ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object/apply:os.system ['true']", "!!python/object/apply:os.system"),
        ("!!python/name:os.system", "!!python/name:os.system"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!str an owl", "!!str"),
        ("!custom an owl", "!custom"),
        ("!<tag:example.com,2024:x> an owl", "tag:example.com,2024:x"),
    ],
)
def test_yaml_tags_of_any_kind_are_rejected(tmp_path: Path, value: str, tag: str) -> None:
    text = one_case(f'id: owl\nprompt: {value}\nclip: {{expect: "an owl", distractors: ["a hawk"]}}\n')
    assert problems(tmp_path, text) == [
        f"suite.yaml:3: YAML tag {tag!r} is not allowed; case files hold plain data only (remove the tag, and "
        "quote the value if it should be a string)"
    ]


def test_tags_on_collections_and_keys_are_rejected_too(tmp_path: Path) -> None:
    text = "cases: !!seq\n  - !!map\n    !!str id: owl\n"
    rest = (
        "is not allowed; case files hold plain data only (remove the tag, and quote the value if it should be a string)"
    )
    assert problems(tmp_path, text) == [
        f"suite.yaml:1: YAML tag '!!seq' {rest}",
        f"suite.yaml:2: YAML tag '!!map' {rest}",
        f"suite.yaml:3: YAML tag '!!str' {rest}",
    ]


def test_alias_bombs_and_recursive_aliases_are_refused_quickly(tmp_path: Path) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        levels.append(f"l{i}: &l{i} [" + ", ".join([f"*{'a' if i == 1 else f'l{i - 1}'}"] * 10) + "]")
    bomb = "\n".join(levels) + "\ncases: *l7\n"
    assert problems(tmp_path, bomb)[0].endswith(": the document is too large (alias expansion?)")
    assert problems(tmp_path, "cases: &c [*c]\n") == ["suite.yaml:1: an alias refers to a collection that contains it"]
    assert problems(tmp_path, "cases: &c {<<: *c}\n") == [
        "suite.yaml:1: a '<<' merge refers to a mapping that contains it"
    ]
    assert problems(tmp_path, "cases: " + "[" * 500 + "]" * 500 + "\n") == [
        "suite.yaml:1: the data is nested more than 64 levels deep"
    ]


def test_anchors_and_merge_keys_work_and_own_keys_override(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            defaults: &common
              steps: 3
            cases:
              - &owl
                id: owl
                prompt: "an owl"
                clip: {expect: "an owl", distractors: ["a hawk"]}
              - <<: *owl
                id: owl-2
                prompt: "an owl at night"
                steps: 4
            """
        )
    )
    first, second = load_case_file(path)
    assert (first.id, first.steps, second.id, second.prompt, second.steps) == ("owl", 3, "owl-2", "an owl at night", 4)
    assert second.checks["clip"] == first.checks["clip"]


# -- several problems, and files that are fine -------------------------------------------------


def test_all_problems_in_a_file_are_reported_together_in_line_order(tmp_path: Path) -> None:
    text = """\
        cases:
          - id: a
            prompt: "an owl"
            steps: 0
            clip: {expect: "an owl", distractors: []}
          - id: b
            prompt: ""
            clip: {expect: "an owl", distractors: ["a hawk"]}
            width: 100
          - id: c
            prompt: "an owl"
            clip: {expect: "an owl", distractors: ["a hawk"]}
        """
    assert [line.split(": ", 2)[:2] for line in problems(tmp_path, text)] == [
        ["suite.yaml:4", "case 'a'"],
        ["suite.yaml:5", "case 'a'"],
        ["suite.yaml:7", "case 'b'"],
        ["suite.yaml:9", "case 'b'"],
    ]


def test_the_rendered_error_names_the_file_in_every_line(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "owls.yml"
    path.parent.mkdir()
    path.write_text(one_case('id: owl\nprompt: ""\nclip: {expect: "an owl", distractors: ["a hawk"]}\n'))
    with pytest.raises(CaseFileError) as info:
        load_case_file(path)
    assert str(info.value) == (
        f"{path}: 1 problem in this case file:\n"
        f"  {path}:3: case 'owl': 'prompt' is empty; write the text it should hold"
    )
    assert info.value.render("nested/owls.yml").splitlines()[1].startswith("  nested/owls.yml:3: case 'owl': ")


def test_a_valid_file_with_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            defaults:
              negative_prompt: "blurry"
              steps: 20
              seeds: [1, 2]
              width: 64
              tags: [nightly]
            cases:
              - id: owl
                prompt: "an owl"
                clip:
                  expect: "an owl"
                  distractors: ["a hawk", "a cat"]
                  min_prob: 0.5
                resnet: {expect: great grey owl, top_k: 5}
              - id: hawk
                prompt: "a hawk"
                negative_prompt: ""
                steps: 30
                seeds: 7  # a count: seeds 0 to 6
                height: 128
                guidance_scale: 5
                tags: fast
                clip: {expect: "a hawk", distractors: "an owl"}
                xfail: "hawks look like owls"
            """
        )
    )
    owl, hawk = load_case_file(path)
    assert (owl.id, owl.prompt, owl.negative_prompt, owl.steps, owl.seeds, owl.width, owl.height) == (
        "owl", "an owl", "blurry", 20, (1, 2), 64, None
    )  # fmt: skip
    assert owl.checks["clip"] == ClipCheck("an owl", ("a hawk", "a cat"), 0.5)
    assert owl.checks.get("resnet") == ResnetCheck(("great grey owl",), 5)
    assert (owl.tags, owl.guidance_scale, owl.line, owl.path) == (("nightly",), 7.5, 8, path)
    assert (hawk.negative_prompt, hawk.steps, hawk.seeds, hawk.width, hawk.height) == ("", 30, tuple(range(7)), 64, 128)
    assert (hawk.guidance_scale, hawk.tags, hawk.xfail, hawk.checks.get("resnet")) == (
        5.0,
        ("fast",),
        "hawks look like owls",
        None,
    )
    assert hawk.checks["clip"].distractors == ("an owl",)


@pytest.mark.parametrize("path", sorted(REPO_CASES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_repository_case_files_are_valid(path: Path) -> None:
    assert load_case_file(path)


# -- through pytest: a broken file is a collection error ---------------------------------------

BROKEN = """\
cases:
  - id: fox
    prompt: "a fox"
    negtive_prompt: "blurry"
    clip: {expect: "a fox", distractors: ["a fox"]}
"""
FINE = """\
cases:
  - id: owl
    prompt: "an owl"
    clip: {expect: "an owl", distractors: ["a hawk"]}
    skip: "no models needed for this test"
"""


def test_broken_file_is_a_collection_error_naming_file_and_lines(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", broken=BROKEN, fine=FINE)
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "fine.yaml::owl*seed=0*",
            "*ERROR collecting broken.yaml*",
            "broken.yaml: 2 problems in this case file:",
            "  broken.yaml:4: case 'fox': unknown key 'negtive_prompt' in a case (did you mean 'negative_prompt'?)*",
            "  broken.yaml:5: case 'fox': the intended label 'a fox' (clip.expect, line 5) is repeated among the "
            "distractors*",
            "*Interrupted: 1 error during collection*",
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "harness/" not in out and "raise " not in out
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_other_files_still_run_with_continue_on_collection_errors(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", broken=BROKEN, fine=FINE)
    result = pytester.runpytest("--continue-on-collection-errors", "-rs")
    result.assert_outcomes(skipped=1, errors=1)
    result.stdout.fnmatch_lines(
        ["fine.yaml s*", "*ERROR collecting broken.yaml*", "broken.yaml: 2 problems in this case file:", "SKIPPED*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_syntax_error_in_a_collected_directory(pytester: pytest.Pytester) -> None:
    cases = pytester.mkdir("cases")
    (cases / "typo.yaml").write_text('cases:\n  - id: owl\n    prompt: "an owl\n')
    (cases / "fine.yaml").write_text(FINE)
    result = pytester.runpytest("cases", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "cases/fine.yaml::owl*",
            "*ERROR collecting cases/typo.yaml*",
            "cases/typo.yaml: 1 problem in this case file:",
            "  cases/typo.yaml:4: YAML syntax error at line 4, column 1: found unexpected end of stream (while "
            "scanning a quoted scalar at line 3, column 13)",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
