"""The harness computes exactly what the study notes compute, and batching seeds changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import Labels, case_yaml, passing_case
from harness.generation.generate import GenerationRequest, generate
from tiny_models import TinyModels


def test_scores_equal_the_seed_notes_formula(
    pytester: pytest.Pytester, model_args: list[str], tiny_models: TinyModels, clip_labels: Labels
) -> None:
    from safetensors.torch import load_file
    from torchvision.models import ResNet50_Weights, resnet50
    from transformers import CLIPModel, CLIPProcessor

    labels = [clip_labels.winner, clip_labels.loser, "a photo of a fox"]
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: owl
              prompt: "{clip_labels.prompt}"
              clip: {{expect: "{labels[0]}", distractors: ["{labels[1]}", "{labels[2]}"]}}
              resnet: {{expect: ["great grey owl"], top_k: 1000}}
            """,
            seeds="[0, 1]",
        ),
    )
    pytester.runpytest(*model_args).assert_outcomes(passed=2)
    records = json.loads((pytester.path / "reports/results.json").read_text())["results"]

    model = CLIPModel.from_pretrained(tiny_models.clip_dir).eval()
    processor = CLIPProcessor.from_pretrained(tiny_models.clip_dir)
    weights = ResNet50_Weights.IMAGENET1K_V2
    resnet = resnet50()
    resnet.load_state_dict(load_file(str(tiny_models.resnet_path)))
    resnet.eval()
    images = []
    for record in records:
        with Image.open(pytester.path / "reports" / record["image"]) as png:
            images.append(png.convert("RGB"))
    # The seed notes, line for line, on the batch the harness scored: both seeds of the case in one
    # CLIP forward and one ResNet forward. fp32 convolutions and matmuls round differently by batch
    # size and CPU kernel (AVX2 vs AVX-512), so a reference computed one image at a time may differ
    # from the harness's in the 6th digit; at the same batch composition the kernels are the same.
    inputs = processor(text=labels, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        outputs = model(**inputs)
        probs = outputs.logits_per_image.softmax(dim=1)
        logits = resnet(torch.stack([weights.transforms()(image) for image in images]))
    resnet_probs = logits.softmax(dim=1)
    for row, record in enumerate(records):
        assert record["clip"]["labels"] == labels
        # 1e-7: the harness runs the text and image towers in separate calls (the text once per label set)
        # and normalizes as CLIPModel.forward does; same shapes, so equal up to the last float32 bit.
        assert np.abs(np.array(record["clip"]["probs"]) - probs[row].numpy()).max() <= 1e-7
        assert record["resnet"]["top"][0][0] == weights.meta["categories"][int(logits[row].argmax())]
        assert record["resnet"]["top"][0][1] == pytest.approx(float(resnet_probs[row].max()), abs=1e-7)


def test_images_equal_a_plain_diffusers_call(
    pytester: pytest.Pytester, model_args: list[str], tiny_models: TinyModels, clip_labels: Labels
) -> None:
    from conftest import direct_image

    pytester.makefile(
        ".yaml",
        suite=passing_case(clip_labels, seeds="[5]"),
    )
    pytester.runpytest(*model_args).assert_outcomes(passed=1)
    with Image.open(pytester.path / "reports/images/suite.yaml/owl-seed5.png") as png:
        harness_png = np.asarray(png)
    assert np.array_equal(harness_png, np.asarray(direct_image(tiny_models, clip_labels.prompt, seed=5)))


def test_batched_seeds_equal_one_seed_at_a_time(tiny_models: TinyModels) -> None:
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(tiny_models.pipeline_dir, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    requests = [GenerationRequest("a red fox in snow", "blurry", seed, 3, 7.5, None, None) for seed in (0, 1, 7)]

    def floats(batch: list[GenerationRequest]) -> np.ndarray:
        # The pipeline's float output for the same call generate() makes, before 8-bit rounding.
        return pipe(
            prompt=[r.prompt for r in batch],
            negative_prompt=[r.negative_prompt for r in batch],
            num_inference_steps=3,
            guidance_scale=7.5,
            generator=[torch.Generator("cpu").manual_seed(r.seed) for r in batch],
            output_type="np",
        ).images

    batched, batched_floats = generate(pipe, requests), floats(requests)
    for index, (request, together) in enumerate(zip(requests, batched, strict=True)):
        (alone,) = generate(pipe, [request])
        alone_floats = floats([request])[0]
        a, b = np.asarray(together.image, dtype=np.int16), np.asarray(alone.image, dtype=np.int16)
        # CPU BLAS and oneDNN pick other kernels for a batch of 3 than for 1 (and AVX2 others than
        # AVX-512): the float images differ in the last digits (measured: up to 2.6e-6 on AVX2). 1e-4 is
        # far above any kernel's rounding and far below a real change (one 8-bit level is 3.9e-3).
        drift = float(np.abs(batched_floats[index] - alone_floats).max())
        assert drift <= 1e-4
        # So an 8-bit pixel may round the other way, by one level, and only where the float value lies
        # within that drift of a rounding boundary: the bound follows from the measured drift, whatever
        # the CPU.
        assert np.abs(a - b).max() <= 1
        scaled = alone_floats * 255
        near_boundary = np.abs(scaled - np.floor(scaled) - 0.5) <= drift * 255 + 1e-4
        assert not ((a != b) & ~near_boundary).any()
    assert not np.array_equal(np.asarray(batched[0].image), np.asarray(batched[1].image))


def test_progress_bars_stay_out_of_pytest_output(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, capfd: pytest.CaptureFixture[str]
) -> None:
    pytester.makefile(
        ".yaml",
        suite=passing_case(clip_labels),
    )
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.enable_progress_bar()
    transformers_logging.enable_progress_bar()
    try:
        # -s: the inner run captures nothing, so a progress bar would reach this process's file
        # descriptors, which capfd reads (tqdm writes to stderr, diffusers' loaders to stdout or stderr).
        result = pytester.runpytest("-s", *model_args)
        written = capfd.readouterr()
    finally:
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    result.assert_outcomes(passed=1)
    everything = result.stdout.str() + result.stderr.str() + written.out + written.err
    assert "passed" in written.out  # capfd did see the inner run's terminal output
    assert "it/s" not in everything
    assert "Loading" not in everything
