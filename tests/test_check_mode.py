"""--t2i-check validates without models; long prompts warn in both modes and are marked in the report."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from html import escape, unescape

import pytest

from conftest import Labels, case_yaml
from tiny_models import TinyModels

LONG_PROMPT = "a watercolor owl " * 30  # far beyond 77 tokens with any CLIP tokenizer
# This suite runs with filterwarnings=error, which pytester's in-process runs inherit; the
# warning under test must stay a warning.
SHOW_TRUNCATION = "[pytest]\nfilterwarnings =\n    default::harness.generation.prompt_length.PromptTruncatedWarning\n"


def report_rows(page: str) -> dict[str, list[dict]]:
    """pytest-html's rows (each with its cells) as the page embeds them, by node id."""
    blob = re.search(r'data-jsonblob="([^"]*)"', page)
    assert blob is not None
    return json.loads(unescape(blob.group(1)))["tests"]


@pytest.fixture
def model_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models the plugin's fixtures load in this test's in-process runs (the real loaders still run)."""
    import harness.common.model_loading

    loaded: list[str] = []
    for name in ("load_pipeline", "load_clip", "load_resnet"):
        real = getattr(harness.common.model_loading, name)

        def recording(*args: object, _real=real, _name=name, **kwargs: object) -> object:
            loaded.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(harness.common.model_loading, name, recording)
    return loaded


def test_check_mode_validates_without_loading_models(
    pytester: pytest.Pytester, model_args: list[str], tiny_models: TinyModels, model_loads: list[str]
) -> None:
    owl = '- id: owl\n  prompt: "an owl"\n  clip: {expect: "an owl", distractors: ["a hawk"]}\n'
    resnet = '  resnet: {expect: ["great grey owl"]}\n'
    pytester.makefile(
        ".yaml",
        good=case_yaml(owl + resnet),
        bad=case_yaml('- id: fox\n  prompt: "a fox"\n  clip: {expect: "a fox", distractors: []}\n'),
    )
    started = time.perf_counter()
    result = pytester.runpytest("--t2i-check", "--setup-show", *model_args)
    elapsed = time.perf_counter() - started
    result.stdout.fnmatch_lines(["*bad.yaml:7: case 'fox': 'clip.distractors' needs at least one label*"])
    # A collection error fails the check: pytest's "tests failed" status, which a CI job sees as a failure.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)  # the broken file; no item ran
    assert model_loads == []
    assert elapsed < 10

    (pytester.path / "bad.yaml").unlink()
    ok = pytester.runpytest("--t2i-check", "--setup-show", *model_args)
    assert ok.ret == pytest.ExitCode.OK
    ok.stdout.fnmatch_lines(
        [
            "*t2i-check: 1 cases validated; prompt lengths checked with the tokenizer in "
            f"{tiny_models.pipeline_dir / 'tokenizer'}; CLIP label lengths checked with the tokenizer in "
            f"{tiny_models.clip_dir}; no model loaded*"
        ]
    )
    ok.assert_outcomes()  # nothing passed, failed or errored: nothing ran
    assert model_loads == []
    assert not (pytester.path / "reports").exists()

    # The same recorder sees every model a real run of the same file loads.
    ran = pytester.runpytest("--setup-show", "--t2i-no-cache", *model_args)
    assert sorted(model_loads) == ["load_clip", "load_pipeline", "load_resnet"]
    ran.stdout.fnmatch_lines(["*SETUP    S clip_scorer*"])


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
    assert len(records) == 2
    assert all("text encoder reads only 77" in record["warnings"][0] for record in records)
    # Each item's row shows the warning under its own prompt, in the Prompt cell.
    page = (pytester.path / "reports/report.html").read_text()
    rows = {row["testId"]: row["resultsTableRow"] for rows in report_rows(page).values() for row in rows}
    for record in records:
        warning = f'<div class="t2i-warning">&#9888; {escape(record["warnings"][0])}</div>'
        assert f'<td class="col-t2i">{escape(LONG_PROMPT)}{warning}</td>' in rows[record["id"]], record["id"]


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
    strict = ["-W", "error::harness.generation.prompt_length.PromptTruncatedWarning"]
    checked = pytester.runpytest("--t2i-check", *strict, *model_args)
    # The warning, raised as an error while the file is collected, is a collection error: "tests failed".
    assert checked.ret == pytest.ExitCode.TESTS_FAILED and "INTERNALERROR" not in checked.stdout.str()
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


# What a pull request's CI job without torch has (README, "Check mode"): a process where importing torch,
# torchvision, diffusers or transformers fails.
WITHOUT_TORCH = (
    "import sys; sys.modules.update(torch=None, torchvision=None, diffusers=None, transformers=None); "
    "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)


def test_check_mode_needs_neither_torch_nor_transformers(pytester: pytest.Pytester, tiny_models: TinyModels) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: owl
              prompt: "an owl"
              clip: {{expect: "an owl", distractors: ["a hawk"]}}
              resnet: {{expect: ["great grey owl"]}}
            - id: wordy
              prompt: "{LONG_PROMPT}"
              clip: {{expect: "an owl", distractors: ["a hawk"]}}
            """
        ),
    )
    pytester.makeini(SHOW_TRUNCATION)
    result = pytester.run(
        sys.executable,
        "-c",
        WITHOUT_TORCH,
        "--t2i-check",
        "-p",
        "no:cacheprovider",
        f"--t2i-model={tiny_models.pipeline_dir}",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(
        [
            "*suite.yaml:10: PromptTruncatedWarning: case 'wordy': prompt has * tokens but the text encoder reads*",
            "*t2i-check: 2 cases validated; prompt lengths checked with the tokenizer in "
            f"{tiny_models.pipeline_dir / 'tokenizer'}; CLIP label lengths not checked: *; no model loaded*",
        ]
    )

    # And a wrong ImageNet name is still found, with its suggestion, from the names shipped with the package.
    (pytester.path / "suite.yaml").write_text(
        case_yaml(
            '- id: owl\n  prompt: "an owl"\n  clip: {expect: "an owl", distractors: ["a hawk"]}\n'
            '  resnet: {expect: ["great gray owl"]}\n'
        )
    )
    bad = pytester.run(sys.executable, "-c", WITHOUT_TORCH, "--t2i-check", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.TESTS_FAILED
    bad.stdout.fnmatch_lines(
        ["*suite.yaml:8: case 'owl': 'great gray owl' is not an ImageNet class name (did you mean 'great grey owl'?)*"]
    )


def test_check_mode_reads_a_local_dirs_tokenizer_in_the_hub_layout(
    pytester: pytest.Pytester, tiny_models: TinyModels
) -> None:
    # SD 1.5 as `hf download --local-dir` leaves it: tokenizer/ holds vocab.json and merges.txt, no tokenizer.json.
    model = pytester.mkdir("sd15")
    (model / "tokenizer").mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tiny_models.pipeline_dir.parent / "tokenizer_src" / name, model / "tokenizer" / name)
    (model / "tokenizer" / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77})
    )
    (model / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f'- id: wordy\n  prompt: "{LONG_PROMPT}"\n  clip: {{expect: "an owl", distractors: ["a hawk"]}}\n'
        ),
    )
    pytester.makeini(SHOW_TRUNCATION)
    result = pytester.runpytest("--t2i-check", "--t2i-model=sd15")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*suite.yaml:5: PromptTruncatedWarning: case 'wordy': prompt has * tokens*",
            f"*prompt lengths checked with the tokenizer in {model / 'tokenizer'}; CLIP label lengths not checked: "
            "*; no model loaded*",
        ]
    )

    shutil.rmtree(model / "tokenizer")
    missing = pytester.runpytest("--t2i-check", "--t2i-model=sd15")
    assert missing.ret == pytest.ExitCode.OK
    missing.stdout.fnmatch_lines(
        [f"*prompt lengths not checked: the local model directory {model} has no tokenizer in {model / 'tokenizer'}*"]
    )
    # The pipeline's tokenizer is looked for in the local dir, not in the hub cache (the CLIP model, left at
    # its hub id here, is).
    prompt_note = missing.stdout.str().split("prompt lengths")[1].split("; CLIP label lengths")[0]
    assert "not cached" not in prompt_note


def test_check_mode_refuses_labels_longer_than_clip_reads(pytester: pytest.Pytester, model_args: list[str]) -> None:
    long_label = "a photo of " + " ".join(["an owl"] * 60)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f'- id: owl\n  prompt: "an owl"\n  clip:\n    expect: "{long_label}"\n    distractors: ["a hawk"]\n'
        ),
    )
    result = pytester.runpytest("--t2i-check", *model_args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*suite.yaml:8: case 'owl': clip.expect has 310 tokens, but CLIP's text encoder reads at most 77 (start "
            "and end tokens included), so CLIP cannot score it: shorten the label*"
        ]
    )
