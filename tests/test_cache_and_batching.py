"""The image cache in real runs, and batching across cases: never redo work, never change a verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import Labels, case_yaml, passing_case


def suite(labels: Labels, *, expect: str | None = None, steps: int = 2, prompt_b: str | None = None) -> str:
    expect = expect or labels.winner
    return case_yaml(
        f"""
        - id: a
          prompt: "{labels.prompt}"
          clip: {{expect: "{expect}", distractors: ["{labels.loser}"]}}
          tags: [first]
        - id: b
          prompt: "{prompt_b or labels.prompt + ", at night"}"
          clip: {{expect: "{expect}", distractors: ["{labels.loser}"]}}
        - id: c
          prompt: "{labels.prompt}, in snow"
          negative_prompt: "blurry"
          clip: {{expect: "{expect}", distractors: ["{labels.loser}"]}}
        """,
        steps=steps,
        seeds="[0, 1]",
    )


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.int16)


def records(pytester: pytest.Pytester, report_dir: str = "reports") -> dict[str, dict]:
    document = json.loads((pytester.path / report_dir / "results.json").read_text())
    return {r["id"]: r for r in document["results"]}


def cached_ids(pytester: pytest.Pytester) -> set[str]:
    return {item_id for item_id, record in records(pytester).items() if record["cached"]}


def run(pytester: pytest.Pytester, model_args: list[str], *extra: str) -> pytest.RunResult:
    return pytester.runpytest("suite.yaml", "--t2i-cache-dir=cache", *model_args, *extra)


def test_second_run_generates_nothing(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    run(pytester, model_args).assert_outcomes(passed=6)
    assert cached_ids(pytester) == set()
    first = {i: pixels(pytester.path / "reports" / r["image"]) for i, r in records(pytester).items()}
    assert len(list((pytester.path / "cache").rglob("*.png"))) == 6

    run(pytester, model_args).assert_outcomes(passed=6)
    assert cached_ids(pytester) == set(first)
    for item_id, record in records(pytester).items():
        assert np.array_equal(pixels(pytester.path / "reports" / record["image"]), first[item_id])
        assert record["timings"]["generate_s"] == 0.0 and len(record["cache_key"]) == 64


def test_editing_checks_regenerates_nothing(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    run(pytester, model_args).assert_outcomes(passed=6)
    # Swap the labels (all items now fail), change tags: the images are the same images.
    edited = (
        suite(clip_labels, expect=clip_labels.loser)
        .replace(f'distractors: ["{clip_labels.loser}"]', f'distractors: ["{clip_labels.winner}"]')
        .replace("tags: [first]", "tags: [renamed]")
    )
    pytester.makefile(".yaml", suite=edited)
    run(pytester, model_args).assert_outcomes(failed=6)
    assert len(cached_ids(pytester)) == 6


def test_changing_a_key_field_regenerates_exactly_the_affected_images(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    run(pytester, model_args).assert_outcomes(passed=6)
    pytester.makefile(".yaml", suite=suite(clip_labels, prompt_b="a different prompt"))
    run(pytester, model_args)
    assert cached_ids(pytester) == {
        "suite.yaml::a[seed=0]",
        "suite.yaml::a[seed=1]",
        "suite.yaml::c[seed=0]",
        "suite.yaml::c[seed=1]",
    }
    pytester.makefile(".yaml", suite=suite(clip_labels, steps=3))
    run(pytester, model_args)
    assert cached_ids(pytester) == set()


def test_corrupt_entry_is_regenerated_not_scored(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    run(pytester, model_args).assert_outcomes(passed=6)
    victim = records(pytester)["suite.yaml::b[seed=1]"]["cache_key"]
    entry = next((pytester.path / "cache").rglob(f"{victim}.png"))
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated, as by a crash or full disk
    run(pytester, model_args).assert_outcomes(passed=6)
    assert cached_ids(pytester) == set(records(pytester)) - {"suite.yaml::b[seed=1]"}
    assert pixels(entry).shape == (64, 64, 3)  # rewritten whole


def test_no_cache_and_refresh(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    run(pytester, model_args, "--t2i-no-cache").assert_outcomes(passed=6)
    assert not (pytester.path / "cache").exists() and cached_ids(pytester) == set()
    run(pytester, model_args).assert_outcomes(passed=6)
    entries = sorted((pytester.path / "cache").rglob("*.png"))
    before = {p: p.stat().st_mtime_ns for p in entries}
    run(pytester, model_args, "--t2i-refresh").assert_outcomes(passed=6)
    assert cached_ids(pytester) == set()
    assert all(p.stat().st_mtime_ns > before[p] for p in entries)  # overwritten


def test_default_cache_lives_in_pytest_cache_and_is_off_without_it(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    pytester.runpytest("suite.yaml", *model_args).assert_outcomes(passed=6)
    assert len(list((pytester.path / ".pytest_cache/d/t2i-images").rglob("*.png"))) == 6
    pytester.runpytest("suite.yaml", "-p", "no:cacheprovider", *model_args).assert_outcomes(passed=6)
    assert cached_ids(pytester) == set()


CALL_COUNTER = """
import pytest

BATCHES = []

@pytest.fixture(scope="session")
def t2i_pipeline(t2i_pipeline):
    # Records the UNet's batch at each call's first step (x2: classifier-free guidance).
    t2i_pipeline.unet.register_forward_pre_hook(lambda module, args: BATCHES.append(args[0].shape[0]))
    yield t2i_pipeline
    print("UNET_BATCHES", sorted(set(BATCHES)))
"""


@pytest.mark.parametrize("batch_size", ["1", "4"])
def test_batch_size_sets_images_per_pipeline_call(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, batch_size: str
) -> None:
    pytester.makeconftest(CALL_COUNTER)
    pytester.makefile(".yaml", suite=suite(clip_labels))
    result = pytester.runpytest("suite.yaml", "-s", "--t2i-no-cache", f"--t2i-batch-size={batch_size}", *model_args)
    result.assert_outcomes(passed=6)
    # a and b share settings (4 images); c has a negative prompt, so it is batched apart (2 images).
    expected = {"1": "[[]2[]]", "4": "[[]4, 8[]]"}[batch_size]  # fnmatch: [[] is a literal [
    result.stdout.fnmatch_lines([f"*UNET_BATCHES {expected}"])


def test_batching_changes_no_image_and_no_verdict(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    outcomes = {}
    images = {}
    for batch_size in ("1", "8"):
        report_dir = f"reports-{batch_size}"
        pytester.runpytest(
            "suite.yaml",
            "--t2i-no-cache",
            f"--t2i-batch-size={batch_size}",
            f"--t2i-report-dir={report_dir}",
            *model_args,
        ).assert_outcomes(passed=6)
        found = records(pytester, report_dir)
        outcomes[batch_size] = {i: (r["outcome"], r["clip"]["passed"]) for i, r in found.items()}
        images[batch_size] = {i: pixels(pytester.path / report_dir / r["image"]) for i, r in found.items()}
    assert outcomes["1"] == outcomes["8"]
    for item_id, alone in images["1"].items():
        # See test_reference.py: CPU kernels differ by batch size; at most one 8-bit level.
        assert np.abs(alone - images["8"][item_id]).max() <= 1


@pytest.mark.parametrize("value", ["0", "257", "²", "٣", "-1", "4.0", " 4"])  # '²', '٣': str.isdigit() says yes
def test_bad_batch_size_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest(f"--t2i-batch-size={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: --t2i-batch-size={value!r} is not a batch size; use auto or a whole number from 1 to 256."]
    )
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()


def test_cache_dir_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    Path(pytester.path / "afile").write_text("")
    result = pytester.runpytest("--t2i-cache-dir=afile")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --t2i-cache-dir='afile' exists and is not a directory."])


SCORING_COUNTER = """
import pytest

CALLS = {"text": 0, "vision": 0, "resnet": 0}

@pytest.fixture(scope="session")
def clip_scorer(clip_scorer):
    clip_scorer.model.text_model.register_forward_pre_hook(lambda *_: CALLS.__setitem__("text", CALLS["text"] + 1))
    clip_scorer.model.vision_model.register_forward_pre_hook(
        lambda *_: CALLS.__setitem__("vision", CALLS["vision"] + 1)
    )
    yield clip_scorer
    print("SCORING_CALLS", CALLS["text"], CALLS["vision"], CALLS["resnet"])

@pytest.fixture(scope="session")
def imagenet_classifier(imagenet_classifier):
    imagenet_classifier.model.register_forward_pre_hook(lambda *_: CALLS.__setitem__("resnet", CALLS["resnet"] + 1))
    return imagenet_classifier
"""


def test_scoring_runs_once_per_batch_and_text_once_per_label_set(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makeconftest(SCORING_COUNTER)
    body = "".join(
        f"""
        - id: case-{n}
          prompt: "{clip_labels.prompt} {n}"
          clip: {{expect: "{clip_labels.winner}", distractors: ["{clip_labels.loser}"{extra}]}}
          resnet: {{expect: ["great grey owl"], top_k: 1000}}
        """
        for n, extra in enumerate(["", "", ', "a pencil sketch"'])
    )
    pytester.makefile(".yaml", suite=case_yaml(body, seeds="[0, 1]"))
    result = pytester.runpytest("suite.yaml", "-s", "--t2i-no-cache", "--t2i-batch-size=8", *model_args)
    result.assert_outcomes(passed=6)
    # One pipeline call for the 6 images, so one CLIP vision forward and one ResNet forward; two
    # distinct label sets, so two text forwards (not one per case or per image).
    result.stdout.fnmatch_lines(["*SCORING_CALLS 2 1 1"])


OOM_ABOVE_ONE_IMAGE = """
import pytest
import torch

BATCHES = []

@pytest.fixture(scope="session")
def t2i_pipeline(t2i_pipeline):
    def fail_when_batched(module, args):
        BATCHES.append(args[0].shape[0])
        if args[0].shape[0] > 2:  # more than one image (x2: classifier-free guidance)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    t2i_pipeline.unet.register_forward_pre_hook(fail_when_batched)
    yield t2i_pipeline
    print("UNET_BATCHES", sorted(set(BATCHES)))
"""


def test_out_of_memory_halves_the_batch_until_it_fits(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makeconftest(OOM_ABOVE_ONE_IMAGE)
    pytester.makefile(".yaml", suite=suite(clip_labels))
    result = pytester.runpytest("suite.yaml", "-s", "--t2i-no-cache", "--t2i-batch-size=4", *model_args)
    result.assert_outcomes(passed=6)  # every image made, at batch 1 after 4 and 2 ran out of memory
    result.stdout.fnmatch_lines(["*UNET_BATCHES [[]2, 4, 8[]]"])


def test_report_marks_images_from_the_cache(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    html_args = ["--html=reports/report.html", "--self-contained-html"]
    run(pytester, model_args, *html_args).assert_outcomes(passed=6)
    assert "image from cache" not in (pytester.path / "reports/report.html").read_text()
    run(pytester, model_args, *html_args).assert_outcomes(passed=6)
    assert (pytester.path / "reports/report.html").read_text().count("image from cache") == 6


def test_a_fully_cached_run_never_loads_the_pipeline(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    first = run(pytester, model_args, "--setup-show")
    first.assert_outcomes(passed=6)
    assert first.stdout.str().count("SETUP    S t2i_pipeline") == 1

    warm = run(pytester, model_args, "--setup-show")
    warm.assert_outcomes(passed=6)
    assert "t2i_pipeline" not in warm.stdout.str().replace("_t2i_pipeline_handle", "")
    assert cached_ids(pytester) == set(records(pytester))
    environment = json.loads((pytester.path / "reports/results.json").read_text())["environment"]
    assert environment["t2i pipeline"].endswith("sd-pipeline @ local dir")  # still named in the report

    # One changed prompt: the pipeline loads (once, at setup) for that case's images only.
    pytester.makefile(".yaml", suite=suite(clip_labels, prompt_b="a different prompt"))
    partial = run(pytester, model_args, "--setup-show")
    assert sum(partial.parseoutcomes().get(k, 0) for k in ("passed", "failed")) == 6
    assert partial.stdout.str().count("SETUP    S t2i_pipeline") == 1
    assert len(cached_ids(pytester)) == 4


SCHEDULER_OVERRIDE = """
import pytest
from diffusers import DDIMScheduler

@pytest.fixture(scope="session")
def t2i_pipeline(t2i_pipeline):
    t2i_pipeline.scheduler = DDIMScheduler.from_config(t2i_pipeline.scheduler.config, timestep_spacing="trailing")
    return t2i_pipeline
"""

SCHEDULER_CHANGED_BY_AUTOUSE = """
import pytest
from diffusers import DDIMScheduler

@pytest.fixture(scope="session", autouse=True)
def other_scheduler(t2i_pipeline):
    t2i_pipeline.scheduler = DDIMScheduler.from_config(t2i_pipeline.scheduler.config, timestep_spacing="trailing")
"""


@pytest.mark.parametrize("conftest", [SCHEDULER_OVERRIDE, SCHEDULER_CHANGED_BY_AUTOUSE], ids=["override", "autouse"])
def test_a_pipeline_changed_in_conftest_never_reuses_images_of_the_plain_one(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, conftest: str
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    run(pytester, model_args)  # the plain pipeline fills the cache
    pytester.makeconftest(conftest)
    run(pytester, model_args)
    assert cached_ids(pytester) == set()  # another scheduler: other images
    run(pytester, model_args)
    assert cached_ids(pytester) == set(records(pytester))  # ... which are cached under their own keys


OWN_PIPELINE_IN_THIS_DIR = """
import pytest
from diffusers import AutoPipelineForText2Image, DDIMScheduler

@pytest.fixture(scope="session")
def t2i_pipeline(t2i_settings):
    pipeline = AutoPipelineForText2Image.from_pretrained(t2i_settings.model, use_safetensors=True)
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config, timestep_spacing="trailing")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
"""


def test_cases_under_another_conftest_are_never_batched_with_these(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    # The same case in two folders; b/ brings its own pipeline. Batching across cases must not make b's
    # images with a's pipeline, nor score them with a's judges.
    one_case = passing_case(clip_labels, seeds="[0, 1]")
    for folder in ("a", "b"):
        pytester.mkdir(folder)
        (pytester.path / folder / "suite.yaml").write_text(one_case)
    (pytester.path / "b" / "conftest.py").write_text(OWN_PIPELINE_IN_THIS_DIR)
    result = pytester.runpytest("a", "b", "--t2i-no-cache", "--t2i-batch-size=4", *model_args)
    result.assert_outcomes(passed=4)
    images = pytester.path / "reports/images"
    for seed in (0, 1):
        a, b = pixels(images / f"a/suite.yaml/owl-seed{seed}.png"), pixels(images / f"b/suite.yaml/owl-seed{seed}.png")
        assert not np.array_equal(a, b), f"seed {seed}: b/ was generated with a/'s pipeline"


OTHER_CLIP_IN_THIS_DIR = """
import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from harness.common.model_loading import ModelInfo
from harness.judging.clip import ClipScorer

@pytest.fixture(scope="session")
def clip_scorer(t2i_settings):
    model = CLIPModel.from_pretrained(t2i_settings.clip_model, use_safetensors=True).eval()
    with torch.no_grad():
        model.text_projection.weight.neg_()  # every text embedding negated: two-label probabilities flip
    processor = CLIPProcessor.from_pretrained(t2i_settings.clip_model)
    return ClipScorer(model=model, processor=processor, device="cpu", info=ModelInfo("clip", "negated", "test"))
"""


def test_cases_under_another_clip_get_their_own_label_features(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    one_case = passing_case(clip_labels)
    for folder in ("a", "b"):
        pytester.mkdir(folder)
        (pytester.path / folder / "suite.yaml").write_text(one_case)
    (pytester.path / "b" / "conftest.py").write_text(OTHER_CLIP_IN_THIS_DIR)
    pytester.runpytest("a", "b", "--t2i-no-cache", *model_args).assert_outcomes(passed=1, failed=1)
    by_file = {record["file"]: record["clip"]["probs"] for record in records(pytester).values()}
    # Negated text embeddings negate both logits, so the two probabilities swap exactly in real
    # arithmetic; float32 softmax of the negated logits rounds in the last bits (~1e-7), never near 1e-5.
    assert by_file["b/suite.yaml"] == pytest.approx(by_file["a/suite.yaml"][::-1], abs=1e-5)


def test_a_cached_folder_does_not_load_the_pipeline_for_another_folders_misses(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    # a/ uses the plugin's pipeline, b/ its own: with a/'s images cached, a/ needs no pipeline, although
    # b/'s prompt has no image under the plugin pipeline's key.
    for folder, prompt in (("a", clip_labels.prompt), ("b", f"{clip_labels.prompt}, at dusk")):
        pytester.mkdir(folder)
        (pytester.path / folder / "suite.yaml").write_text(passing_case(clip_labels, prompt=prompt))
    (pytester.path / "b" / "conftest.py").write_text(OWN_PIPELINE_IN_THIS_DIR)
    pytester.runpytest("a", "b", "--t2i-cache-dir=cache", *model_args)
    warm = pytester.runpytest("a", "b", "--t2i-cache-dir=cache", "--setup-show", *model_args)
    # b/'s override always loads (it is the user's), the plugin's own pipeline never does.
    assert warm.stdout.str().count("SETUP    S t2i_pipeline") == 1
    assert all(record["cached"] for record in records(pytester).values())
