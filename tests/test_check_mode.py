"""--t2i-check validates without models; long prompts warn in both modes and are marked in the report."""

from __future__ import annotations

import json
import time

import pytest

from conftest import Labels, case_yaml

LONG_PROMPT = "a watercolor owl " * 30  # far beyond 77 tokens with any CLIP tokenizer
# This suite runs with filterwarnings=error, which pytester's in-process runs inherit; the
# warning under test must stay a warning.
SHOW_TRUNCATION = "[pytest]\nfilterwarnings =\n    default::harness.prompt_length.PromptTruncatedWarning\n"


def test_check_mode_validates_without_loading_models(pytester: pytest.Pytester, model_args: list[str]) -> None:
    pytester.makefile(
        ".yaml",
        good=case_yaml('- id: owl\n  prompt: "an owl"\n  clip: {expect: "an owl", distractors: ["a hawk"]}\n'),
        bad=case_yaml('- id: fox\n  prompt: "a fox"\n  clip: {expect: "a fox", distractors: []}\n'),
    )
    started = time.perf_counter()
    result = pytester.runpytest("--t2i-check", "--setup-show", *model_args)
    elapsed = time.perf_counter() - started
    result.stdout.fnmatch_lines(["*bad.yaml:7: case 'fox': 'clip.distractors' needs at least one label*"])
    assert result.ret != pytest.ExitCode.OK  # a collection error fails the run, as pytest always does
    assert "SETUP" not in result.stdout.str()  # no fixture, so no model, was set up
    assert elapsed < 10

    (pytester.path / "bad.yaml").unlink()
    ok = pytester.runpytest("--t2i-check", "--setup-show", *model_args)
    assert ok.ret == pytest.ExitCode.OK
    ok.stdout.fnmatch_lines(["*t2i-check: 1 cases validated; prompt lengths checked with the cached tokenizer*"])
    assert "SETUP" not in ok.stdout.str()
    assert not (pytester.path / "reports").exists()


def test_check_mode_warns_on_prompts_the_encoder_truncates(pytester: pytest.Pytester, model_args: list[str]) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f'- id: wordy\n  prompt: "{LONG_PROMPT}"\n  clip: {{expect: "an owl", distractors: ["a hawk"]}}\n'
        ),
    )
    pytester.makeini(SHOW_TRUNCATION)
    result = pytester.runpytest("--t2i-check", *model_args)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*suite.yaml:5: PromptTruncatedWarning: case 'wordy': "
            "prompt has * tokens but the text encoder reads only 77*",
        ]
    )


def test_check_mode_without_a_cached_tokenizer_says_so(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml", suite=case_yaml('- id: owl\n  prompt: "an owl"\n  clip: {expect: "an owl", distractors: ["a hawk"]}\n')
    )
    result = pytester.runpytest("--t2i-check", "--t2i-model=no-such-org/no-such-model")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*prompt lengths not checked: the tokenizer of no-such-org/no-such-model is not cached*"]
    )


def test_a_run_warns_and_marks_truncated_prompts(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: wordy
              prompt: "{LONG_PROMPT}"
              clip: {clip_labels.passing}
            """,
            seeds="[0, 1]",
        ),
    )
    pytester.makeini(SHOW_TRUNCATION)
    result = pytester.runpytest("--html=reports/report.html", "--self-contained-html", *model_args)
    result.stdout.fnmatch_lines(["*PromptTruncatedWarning: case 'wordy': prompt has * tokens*"])
    records = json.loads((pytester.path / "reports/results.json").read_text())["results"]
    assert all("text encoder reads only 77" in record["warnings"][0] for record in records)
    assert "t2i-warning" in (pytester.path / "reports/report.html").read_text()


def test_check_mode_leaves_the_last_report_alone(pytester: pytest.Pytester, model_args: list[str]) -> None:
    pytester.makefile(
        ".yaml", suite=case_yaml('- id: owl\n  prompt: "an owl"\n  clip: {expect: "an owl", distractors: ["a hawk"]}\n')
    )
    report = pytester.mkdir("reports") / "report.html"
    report.write_text("the last real run's report")
    result = pytester.runpytest("--t2i-check", "--html=reports/report.html", "--self-contained-html", *model_args)
    assert result.ret == pytest.ExitCode.OK
    assert report.read_text() == "the last real run's report"


def test_warnings_as_errors_make_a_clean_error_in_both_modes(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: fine
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            - id: wordy
              prompt: "{LONG_PROMPT}"
              clip: {clip_labels.passing}
            - id: also-fine
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            """
        ),
    )
    strict = ["-W", "error::harness.prompt_length.PromptTruncatedWarning"]
    checked = pytester.runpytest("--t2i-check", *strict, *model_args)
    assert checked.ret != pytest.ExitCode.OK and "INTERNALERROR" not in checked.stdout.str()
    checked.stdout.fnmatch_lines(
        ["suite.yaml:9: case 'wordy': prompt has * tokens but the text encoder reads only 77*"]
    )

    # In a run the three cases share one pipeline call: only the long prompt's item fails, and the
    # others are still scored, never passed unchecked.
    ran = pytester.runpytest("--t2i-batch-size=8", "--t2i-no-cache", *strict, *model_args)
    ran.assert_outcomes(passed=2, failed=1)
    ran.stdout.fnmatch_lines(["suite.yaml:9: case 'wordy', seed 0", "case 'wordy': prompt has * tokens*"])
    assert "Traceback" not in ran.stdout.str()
    records = {r["case"]: r for r in json.loads((pytester.path / "reports/results.json").read_text())["results"]}
    assert records["fine"]["clip"]["passed"] and records["also-fine"]["clip"]["passed"]


def test_check_mode_ignores_the_device_it_will_not_use(pytester: pytest.Pytester, model_args: list[str]) -> None:
    # e.g. `t2i_device = cuda` in pytest.ini for the GPU runs, and the case files checked on a CPU-only CI runner.
    pytester.makeini("[pytest]\nt2i_device = cuda:7\n")
    pytester.makefile(
        ".yaml", good=case_yaml('- id: owl\n  prompt: "an owl"\n  clip: {expect: "an owl", distractors: ["a hawk"]}\n')
    )
    result = pytester.runpytest("--t2i-check", *[arg for arg in model_args if not arg.startswith("--t2i-device")])
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*t2i-check: 1 cases validated*"])
