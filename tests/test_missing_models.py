"""A model that is neither cached nor reachable: one clear paragraph, then one line per item."""

from __future__ import annotations

import pytest

from tiny_models import TinyModels

CASES = """\
cases:
  - id: owl
    prompt: "an owl"
    steps: 2
    seeds: [0, 1, 2]
    clip: {expect: "an owl", distractors: ["a hawk"]}
"""


def test_missing_hub_model_explains_where_it_looked_and_how_to_fix(
    pytester: pytest.Pytester, tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytester.makefile(".yaml", suite=CASES)
    result = pytester.runpytest_subprocess(
        "--t2i-model=no-such-org/no-such-model", f"--t2i-clip-model={tiny_models.clip_dir}"
    )
    result.assert_outcomes(errors=3)
    output = result.stdout.str()
    # Count in the ERRORS section only: the short summary below it repeats each message, cut to the terminal
    # width locally but whole when pytest sees a CI environment variable.
    errors_section = output.split("short test summary info")[0]
    assert errors_section.count("The text-to-image model 'no-such-org/no-such-model' (--t2i-model) is neither in") == 1
    result.stdout.fnmatch_lines(
        [
            "*local Hugging Face cache (*hub) nor downloadable from here*Fix: download it once*"
            "`hf download no-such-org/no-such-model`*point --t2i-model at a local directory*",
        ]
    )
    assert errors_section.count("model 'no-such-org/no-such-model' is unavailable (explained at the first item") == 2
    assert "Traceback" not in output and "raise " not in output
    assert "warnings summary" not in output


def test_missing_local_dir_says_it_does_not_exist(pytester: pytest.Pytester, tiny_models: TinyModels) -> None:
    pytester.makefile(".yaml", suite=CASES)
    result = pytester.runpytest("--t2i-model=./models/sd-missing", f"--t2i-clip-model={tiny_models.clip_dir}")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*The text-to-image model './models/sd-missing' (--t2i-model) looks like a local directory, "
            "but it does not exist*"
        ]
    )
