"""A model that is neither cached nor reachable: one clear paragraph, then one line per item."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import Labels, passing_case
from hub_cache import COMMIT, put_in_hub_cache
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
    pytester: pytest.Pytester, tiny_models: TinyModels
) -> None:
    # In process: tests/conftest.py sets HF_HUB_OFFLINE before huggingface_hub is imported.
    pytester.makefile(".yaml", suite=CASES)
    result = pytester.runpytest("--t2i-model=no-such-org/no-such-model", f"--t2i-clip-model={tiny_models.clip_dir}")
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


FIRST_RUN_CASES = """\
cases:
  - id: owl
    prompt: "an owl"
    steps: 2
    clip: {expect: "an owl", distractors: ["a hawk"]}
    resnet: {expect: ["great grey owl"]}
  - id: fox
    prompt: "a fox"
    steps: 2
    xfail: "known to fail"
    clip: {expect: "a fox", distractors: ["a dog"]}
"""
# huggingface_hub retries an unreachable endpoint after 1, 2, 4, 8 and 8 s; its lines say so.
RETRY_LINES = ("Retrying in", "thrown while requesting")


def no_network(monkeypatch: pytest.MonkeyPatch, hf_home: Path, torch_home: Path) -> str:
    """Environment of a machine without network access, for a subprocess; returns the closed endpoint."""
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there, so connections are refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_ENDPOINT", closed)
    # download.pytorch.org through a proxy that refuses: the probe fails at once, whatever this machine's DNS does
    # (a name lookup can take seconds to fail, and no timeout of urllib's covers it).
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, closed)
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return closed


def test_first_run_offline_names_every_missing_model_in_seconds(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hf_home, torch_home = tmp_path / "hf", tmp_path / "torch"
    hf_home.mkdir()
    torch_home.mkdir()
    closed = no_network(monkeypatch, hf_home, torch_home)
    pytester.makefile(".yaml", suite=FIRST_RUN_CASES)
    started = time.perf_counter()
    result = pytester.runpytest_subprocess("--t2i-device=cpu")  # the default models
    elapsed = time.perf_counter() - started
    output = result.stdout.str() + result.stderr.str()
    # Importing torch and torchvision is most of it (about 5 s on 2 loaded cores); the hub's retries alone
    # were 23 s per model, so anything near them fails this.
    assert elapsed < 20, elapsed
    result.assert_outcomes(errors=2)  # the xfail case too: it never ran, so it did not fail as expected
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert not any(line in output for line in RETRY_LINES)
    assert "Traceback" not in output

    errors = output.split("short test summary info")[0]
    unreachable = f"{closed} did not answer: connection refused"
    resnet_url = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
    paragraph = [
        "3 models this run needs are neither on this machine nor downloadable:",
        "The text-to-image model 'stable-diffusion-v1-5/stable-diffusion-v1-5' (--t2i-model) is neither in the "
        f"local Hugging Face cache ({hf_home / 'hub'}) nor downloadable from here ({unreachable}). Fix: download "
        "it once on a machine with network access (`hf download stable-diffusion-v1-5/stable-diffusion-v1-5`, "
        "with HF_HOME pointing at the cache you will use), or point --t2i-model at a local directory holding "
        "the model.",
        "The CLIP model 'openai/clip-vit-base-patch32' (--t2i-clip-model) is neither in the local Hugging Face "
        f"cache ({hf_home / 'hub'}) nor downloadable from here ({unreachable}). Fix: download it once on a "
        "machine with network access (`hf download openai/clip-vit-base-patch32`, with HF_HOME pointing at the "
        "cache you will use), or point --t2i-clip-model at a local directory holding the model.",
        "The ResNet-50 weights ResNet50_Weights.IMAGENET1K_V2 (--t2i-resnet-weights) are neither in torch's "
        f"cache ({torch_home / 'hub/checkpoints/resnet50-11ad3fa6.pth'}) nor downloadable from here ({resnet_url} "
        f"did not answer: connection refused). Fix: download {resnet_url} once to that path (or set TORCH_HOME), "
        "or point --t2i-resnet-weights at a local state-dict file (.safetensors, .pt or .pth).",
    ]
    lines = errors.splitlines()
    start = lines.index(paragraph[0])
    assert "ERROR at setup of owl[seed=0]" in lines[start - 1]  # the first item carries the whole paragraph
    assert lines[start : start + 4] == paragraph
    assert errors.count("is neither in") == 2 and errors.count("are neither in") == 1  # explained once
    fox = lines.index(next(line for line in lines if "ERROR at setup of fox[seed=0]" in line))
    assert lines[fox + 1] == (
        "models 'stable-diffusion-v1-5/stable-diffusion-v1-5', 'openai/clip-vit-base-patch32' are unavailable "
        "(explained at the first item that needed one)"
    )
    records = json.loads((pytester.path / "reports/results.json").read_text())["results"]
    assert [(r["case"], r["outcome"]) for r in records] == [("owl", "error"), ("fox", "error")]


def test_cached_models_run_offline_without_a_retry(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tiny_models: TinyModels,
    clip_labels: Labels,
) -> None:
    hf_home = tmp_path / "hf"
    put_in_hub_cache(hf_home / "hub", "stable-diffusion-v1-5/stable-diffusion-v1-5", tiny_models.pipeline_dir)
    put_in_hub_cache(hf_home / "hub", "openai/clip-vit-base-patch32", tiny_models.clip_dir)
    no_network(monkeypatch, hf_home, tmp_path / "torch")
    # No `resnet:` section: torchvision's loader reads a cached file without asking the network, the hub's do not.
    pytester.makefile(".yaml", suite=passing_case(clip_labels))
    started = time.perf_counter()
    result = pytester.runpytest_subprocess("-s", "--t2i-device=cpu", "--t2i-no-cache")  # -s: the hub's log lines show
    elapsed = time.perf_counter() - started
    output = result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)
    assert not any(line in output for line in RETRY_LINES), output
    # The retry lines are the check; this catches a silent wait. Importing torch and loading the tiny models
    # take 8-15 s on 2 loaded cores; one model's retries alone add 23 s (before this change: minutes).
    assert elapsed < 30, elapsed
    environment = json.loads((pytester.path / "reports/results.json").read_text())["environment"]
    assert environment["t2i pipeline"] == f"stable-diffusion-v1-5/stable-diffusion-v1-5 @ {COMMIT}"
    assert environment["t2i clip"] == f"openai/clip-vit-base-patch32 @ {COMMIT}"


XFAIL_CASES = """\
cases:
  - id: owl
    prompt: "an owl"
    steps: 2
    seeds: [0, 1]
    clip: {expect: "an owl", distractors: ["a hawk"]}
  - id: fox
    prompt: "a fox"
    steps: 2
    xfail: "known to fail"
    clip: {expect: "a fox", distractors: ["a dog"]}
  - id: hare
    prompt: "a hare"
    skip: "not this release"
    clip: {expect: "a hare", distractors: ["a rabbit"]}
"""


def test_xfail_items_whose_models_are_missing_are_errors(pytester: pytest.Pytester, tiny_models: TinyModels) -> None:
    pytester.makefile(".yaml", suite=XFAIL_CASES)
    result = pytester.runpytest("--t2i-model=./models/sd-missing", f"--t2i-clip-model={tiny_models.clip_dir}")
    result.assert_outcomes(errors=3, skipped=1)  # skip: still skipped, it would not have run anyway
    errors = result.stdout.str().split("short test summary info")[0]
    assert errors.count("looks like a local directory, but it does not exist") == 1
    assert errors.count("model './models/sd-missing' is unavailable (explained at the first item") == 2
    outcomes = {
        r["id"]: r["outcome"] for r in json.loads((pytester.path / "reports/results.json").read_text())["results"]
    }
    assert outcomes == {
        "suite.yaml::owl[seed=0]": "error",
        "suite.yaml::owl[seed=1]": "error",
        "suite.yaml::fox[seed=0]": "error",
        "suite.yaml::hare[seed=0]": "skipped",
    }


def test_items_needing_no_missing_model_still_run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    model_args: list[str],
    clip_labels: Labels,
) -> None:
    # ResNet-50 by its torchvision name, with an empty torch cache and no network: only the case with a
    # `resnet:` section needs it.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    pytester.makefile(
        ".yaml",
        suite=f"""\
cases:
  - id: owl
    prompt: "{clip_labels.prompt}"
    steps: 2
    clip: {clip_labels.passing}
  - id: owl-classified
    prompt: "{clip_labels.prompt}"
    steps: 2
    clip: {clip_labels.passing}
    resnet: {{expect: ["great grey owl"], top_k: 1000}}
""",
    )
    args = [arg for arg in model_args if not arg.startswith("--t2i-resnet-weights")]
    result = pytester.runpytest("--t2i-no-cache", *args)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of owl-classified?seed=0?*",
            "The ResNet-50 weights ResNet50_Weights.IMAGENET1K_V2 (--t2i-resnet-weights) are neither in torch's "
            f"cache ({tmp_path / 'torch/hub/checkpoints/resnet50-11ad3fa6.pth'}) nor downloadable from here "
            "(https://download.pytorch.org/models/resnet50-11ad3fa6.pth did not answer: connection refused). Fix: *",
        ]
    )


CLIP_OF_MY_OWN = """
import pytest
from transformers import CLIPModel, CLIPProcessor

from harness.common.model_loading import ModelInfo
from harness.judging.clip import ClipScorer

@pytest.fixture(scope="session")
def clip_scorer():
    model = CLIPModel.from_pretrained({clip_dir!r}, use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained({clip_dir!r})
    return ClipScorer(model=model, processor=processor, device="cpu", info=ModelInfo("clip", "mine", "test"))
"""
WRAPPED_PIPELINE = """
import pytest

@pytest.fixture(scope="session")
def t2i_pipeline(t2i_pipeline):
    return t2i_pipeline
"""


def test_a_conftest_model_is_its_own_but_a_wrapped_fixture_needs_the_plugins(
    pytester: pytest.Pytester, model_args: list[str], tiny_models: TinyModels, clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=passing_case(clip_labels))
    pytester.makeconftest(CLIP_OF_MY_OWN.format(clip_dir=str(tiny_models.clip_dir)))
    # --t2i-clip-model names nothing on disk, but the conftest.py's clip_scorer never loads it.
    mine = [*[a for a in model_args if not a.startswith("--t2i-clip-model")], "--t2i-clip-model=./no-clip-here"]
    pytester.runpytest("--t2i-no-cache", *mine).assert_outcomes(passed=1)

    # A t2i_pipeline that wraps the plugin's loads the plugin's model: missing, it is named before the run.
    pytester.makeconftest(WRAPPED_PIPELINE)
    args = [*[a for a in model_args if not a.startswith("--t2i-model")], "--t2i-model=./no-pipeline-here"]
    result = pytester.runpytest("--t2i-no-cache", "--setup-show", *args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*The text-to-image model './no-pipeline-here' (--t2i-model) looks like a local*"])
    assert "SETUP    S clip_scorer" not in result.stdout.str()  # failed before any fixture loaded a model
