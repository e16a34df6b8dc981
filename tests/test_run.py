"""End to end: cases generate images, pass or fail on CLIP and ResNet, and failures read as tables."""

from __future__ import annotations

import json

import pytest

from conftest import Labels, case_yaml


def test_passing_and_failing_cases(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: good
              prompt: "{clip_labels.prompt}"
              clip:
                expect: "{clip_labels.winner}"
                distractors: ["{clip_labels.loser}"]
            - id: bad
              prompt: "{clip_labels.prompt}"
              clip:
                expect: "{clip_labels.loser}"
                distractors: ["{clip_labels.winner}"]
            """,
            seeds="[0, 1]",
        ),
    )
    result = pytester.runpytest("suite.yaml", *model_args)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "suite.yaml:*: case 'bad', seed 0",
            f"CLIP picked '{clip_labels.winner}' (0.*) over the intended label (0.*):",
            f"*intended * {clip_labels.loser}",
            f"*picked * {clip_labels.winner}",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "def _run" not in result.stdout.str()  # no harness source in the failure


def test_min_prob_failure_says_so(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: picky
              prompt: "{clip_labels.prompt}"
              clip:
                expect: "{clip_labels.winner}"
                distractors: ["{clip_labels.loser}"]
                min_prob: 1.0
            """
        ),
    )
    result = pytester.runpytest("suite.yaml", *model_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["CLIP picked the intended label, but with 0.* < min_prob 1.0:"])


def test_resnet_check_passes_on_top_class_and_fails_with_top_five(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, resnet_top_class: str
) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: sees-it
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
              resnet: {{expect: ["{resnet_top_class}"]}}
            - id: misses-it
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
              resnet: {{expect: ["great grey owl", "red fox"], top_k: 2}}
            """
        ),
    )
    result = pytester.runpytest("suite.yaml", *model_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "ResNet-50 does not see 'great grey owl' / 'red fox' in its top 2:",
            "  rank      prob  class",
            f"     1    *  {resnet_top_class}",
            "     5    *",
            "  expected: great grey owl *, red fox *",
        ]
    )


def test_skip_and_xfail(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: skipped
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
              skip: "model cannot draw this yet"
            - id: expected-failure
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.failing}
              xfail: "known confusion"
            """
        ),
    )
    result = pytester.runpytest("suite.yaml", "-rsx", *model_args)
    result.assert_outcomes(skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*SKIPPED*model cannot draw this yet*", "*XFAIL*known confusion*"])
    records = {r["case"]: r for r in json.loads((pytester.path / "reports/results.json").read_text())["results"]}
    assert records["skipped"]["outcome"] == "skipped"
    assert records["expected-failure"]["outcome"] == "xfailed"


def test_stop_at_first_failure_and_rerun_last_failed(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: bad
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.failing}
            - id: good
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            """,
            seeds="[0, 1]",
        ),
    )
    pytester.runpytest("suite.yaml", "-x", *model_args).assert_outcomes(failed=1)
    rerun = pytester.runpytest("suite.yaml", "--lf", "-v", *model_args)
    rerun.assert_outcomes(failed=1)
    rerun.stdout.fnmatch_lines(["*run-last-failure: rerun previous 1 failure*", "suite.yaml::bad?seed=0? FAILED*"])
