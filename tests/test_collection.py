"""Collection: node ids, selection with -k and -m, which YAML files count as case files."""

from __future__ import annotations

import pytest

CASES = """\
defaults:
  seeds: [0, 1]
cases:
  - id: watercolor-owl
    prompt: "A watercolor painting of an owl"
    clip: {expect: "a watercolor owl", distractors: ["a watercolor hawk"]}
    tags: [animals, style]
  - id: teapot
    prompt: "A photo of a teapot"
    clip: {expect: "a teapot", distractors: ["a kettle"]}
    tags: [objects]
"""


def test_each_case_and_seed_is_an_item(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", animals=CASES)
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "animals.yaml::watercolor-owl[[]seed=0[]]",
            "animals.yaml::watercolor-owl[[]seed=1[]]",
            "animals.yaml::teapot[[]seed=0[]]",
            "animals.yaml::teapot[[]seed=1[]]",
            "4 tests collected*",
        ]
    )


def test_select_with_keyword_and_tag_markers(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", animals=CASES)
    by_keyword = pytester.runpytest("--collect-only", "-q", "-k", "owl and not teapot")
    by_keyword.stdout.fnmatch_lines(
        [
            "animals.yaml::watercolor-owl[[]seed=0[]]",
            "animals.yaml::watercolor-owl[[]seed=1[]]",
            "2/4 tests collected (2 deselected)*",
        ]
    )
    by_node_id = pytester.runpytest("--collect-only", "-q", "animals.yaml::teapot[seed=1]")
    by_node_id.stdout.fnmatch_lines(["animals.yaml::teapot[[]seed=1[]]", "1 test collected*"])
    by_tag = pytester.runpytest("--collect-only", "-q", "-m", "objects", "--strict-markers")
    by_tag.stdout.fnmatch_lines(["animals.yaml::teapot[[]seed=0[]]", "animals.yaml::teapot[[]seed=1[]]", "2/4 tests*"])


def test_unrelated_yaml_is_neither_collected_nor_an_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", animals=CASES)
    workflows = pytester.mkdir(".github").joinpath("ci.yml")
    workflows.write_text("on: [push]\njobs:\n  test: {runs-on: ubuntu-latest}\n")
    pytester.makefile(".yml", **{"docker-compose": "services:\n  web: {image: nginx}\n"})
    pytester.makefile(".yaml", broken="key: [unclosed\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.assert_outcomes()
    result.stdout.fnmatch_lines(["4 tests collected*"])
    assert "docker-compose" not in result.stdout.str()
    assert "broken" not in result.stdout.str()


@pytest.mark.parametrize(
    "text",
    [
        "\ufeff" + CASES,  # saved with a byte order mark
        CASES.replace("cases:", '"cases":'),
        CASES.replace("cases:", "'cases' :"),
        '{defaults: {seeds: [0, 1]}, cases: [{id: watercolor-owl, prompt: "an owl", clip: {expect: a, '
        "distractors: [b]}}, {id: teapot, prompt: a teapot, clip: {expect: a, distractors: [b]}}]}",
        "# a comment first\n---\n" + CASES,
    ],
    ids=["bom", "double-quoted-key", "single-quoted-key", "flow-style", "document-marker"],
)
def test_every_valid_case_file_is_collected_when_recursing(pytester: pytest.Pytester, text: str) -> None:
    pytester.mkdir("suite")
    (pytester.path / "suite" / "animals.yaml").write_text(text, encoding="utf-8")
    result = pytester.runpytest("--collect-only", "-q", "suite")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*4 tests collected*"])


def test_a_case_file_with_a_syntax_error_is_still_collected_when_recursing(pytester: pytest.Pytester) -> None:
    pytester.mkdir("suite")
    (pytester.path / "suite" / "animals.yaml").write_text('cases:\n  - id: owl\n    prompt: "unclosed\n')
    result = pytester.runpytest("--collect-only", "-q", "suite")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # an error, never a silently lost file
    result.stdout.fnmatch_lines(["*suite/animals.yaml:4: YAML syntax error*"])


def test_yaml_named_on_the_command_line_is_always_a_case_file(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", broken="prompts:\n  - id: x\n")
    result = pytester.runpytest("broken.yaml")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*broken.yaml:1: no top-level 'cases:' key*"])


def test_items_request_fixtures_like_functions(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", animals=CASES)
    result = pytester.runpytest("--fixtures-per-test", "-v", "animals.yaml::teapot[seed=0]")
    # The pipeline is reached through a handle that loads `t2i_pipeline` only when an image is not
    # cached (tests/test_cache_and_batching.py checks when it loads).
    result.stdout.fnmatch_lines(
        ["*fixtures used by teapot[[]seed=0[]]*", "_t2i_pipeline_handle*", "clip_scorer*", "t2i_settings*"]
    )
    assert "imagenet_classifier" not in result.stdout.str()  # no resnet: section, no ResNet
