"""Faults during a run: NaN/inf and all-black images fail unscored; out of memory fails the item, the run goes on.

All on the tiny pipeline's real inference, with weights broken through torch, not with mocks.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from conftest import Labels, case_yaml
from harness.generation.generate import GenerationRequest, generate

if TYPE_CHECKING:
    from tiny_models import TinyModels


def tiny_pipeline(tiny_models: TinyModels):  # type: ignore[no-untyped-def]
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models.pipeline_dir, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


REQUESTS = [GenerationRequest("an owl", None, seed, 2, 7.5, None, None) for seed in (0, 1)]


def test_healthy_pipeline_output_is_an_image(tiny_models: TinyModels) -> None:
    results = generate(tiny_pipeline(tiny_models), REQUESTS)
    assert [r.fault for r in results] == [None, None]
    assert all(r.image is not None and r.image.size == (64, 64) for r in results)


def test_nan_from_the_vae_is_a_fault_not_an_image(tiny_models: TinyModels) -> None:
    import torch

    pipe = tiny_pipeline(tiny_models)
    with torch.no_grad():
        pipe.vae.decoder.conv_out.weight.fill_(float("nan"))  # what an fp16 overflow in the VAE leaves
    results = generate(pipe, REQUESTS)
    for result in results:
        assert result.image is None
        assert result.fault == (
            "the pipeline produced 12288 NaN/inf pixel values (typically an fp16 overflow in the VAE; "
            "try --t2i-dtype=float32 or bfloat16)"
        )  # 64 x 64 x 3: every value


def test_all_black_output_is_a_fault_not_an_image(tiny_models: TinyModels) -> None:
    import torch

    pipe = tiny_pipeline(tiny_models)
    with torch.no_grad():
        # The decoder then outputs -1 everywhere, which the image processor maps to 0: black.
        pipe.vae.decoder.conv_out.weight.zero_()
        pipe.vae.decoder.conv_out.bias.fill_(-1.0)
    results = generate(pipe, REQUESTS)
    assert [(r.image, r.fault) for r in results] == [
        (None, "the image is entirely black (a safety checker's blank, or a broken VAE decode)")
    ] * 2


CONFTEST_BROKEN_VAE = """
import pytest
import torch

from harness.common.model_loading import load_pipeline


@pytest.fixture(scope="session")
def t2i_pipeline(t2i_settings):
    pipeline, _ = load_pipeline(t2i_settings)
    with torch.no_grad():
        pipeline.vae.decoder.conv_out.weight.fill_(float("nan"))
    return pipeline
"""


def test_nan_image_fails_its_item_unscored(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makeconftest(CONFTEST_BROKEN_VAE)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: owl
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            """
        ),
    )
    result = pytester.runpytest("suite.yaml", *model_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "suite.yaml:6: case 'owl', seed 0",
            "image not scored: the pipeline produced 12288 NaN/inf pixel values (typically an fp16 overflow "
            "in the VAE; try --t2i-dtype=float32 or bfloat16)",
        ]
    )
    assert "CLIP picked" not in result.stdout.str() and "Traceback" not in result.stdout.str()
    (record,) = json.loads((pytester.path / "reports/results.json").read_text())["results"]
    assert record["outcome"] == "failed" and record["fault"].startswith("the pipeline produced 12288 NaN/inf")
    assert record["clip"] is None and record["image"] is None
    assert not list((pytester.path / "reports").rglob("*.png"))


CONFTEST_OOM_AT_128 = """
import pytest
import torch

from harness.common.model_loading import load_pipeline


@pytest.fixture(scope="session")
def t2i_pipeline(t2i_settings):
    pipeline, _ = load_pipeline(t2i_settings)
    with open("pipeline-loads.txt", "a") as log:
        log.write("loaded\\n")

    def out_of_memory_at_128_wide(module, args):
        # Latents are the image scaled down by the VAE's factor: a 128-pixel-wide image "does not fit".
        if args[0].shape[-1] * pipeline.vae_scale_factor == 128:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    pipeline.unet.register_forward_pre_hook(out_of_memory_at_128_wide)
    return pipeline
"""


def test_out_of_memory_fails_the_item_and_the_run_goes_on(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makeconftest(CONFTEST_OOM_AT_128)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: too-big
              prompt: "{clip_labels.prompt}"
              width: 128
              height: 64
              clip: {clip_labels.passing}
            - id: fits
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            """,
            seeds="[0, 1]",
        ),
    )
    result = pytester.runpytest("suite.yaml", "-v", *model_args)
    result.assert_outcomes(failed=2, passed=2)
    message = (
        "image not scored: the device ran out of memory generating one image at 128x64 with 2 steps, even at "
        "batch size 1; lower width/height, use --t2i-dtype=float16 (or bfloat16), or free memory used by other "
        "processes (the models stay loaded and the run goes on)"
    )
    result.stdout.fnmatch_lines(
        [
            "suite.yaml::too-big?seed=0? FAILED*",
            "suite.yaml::too-big?seed=1? FAILED*",
            "suite.yaml::fits?seed=0? PASSED*",
            "suite.yaml::fits?seed=1? PASSED*",
            "suite.yaml:6: case 'too-big', seed 0",
            message,
            "suite.yaml:6: case 'too-big', seed 1",
            message,
        ]
    )
    assert "Traceback" not in result.stdout.str() and "OutOfMemoryError" not in result.stdout.str()
    assert (pytester.path / "pipeline-loads.txt").read_text() == "loaded\n"  # loaded once, kept after the OOM
    records = json.loads((pytester.path / "reports/results.json").read_text())["results"]
    assert [(r["case"], r["outcome"]) for r in records] == [("too-big", "failed")] * 2 + [("fits", "passed")] * 2
    assert records[0]["fault"] == message.removeprefix("image not scored: ")
    assert records[0]["clip"] is None and records[0]["image"] is None
