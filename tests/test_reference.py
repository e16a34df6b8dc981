"""The harness computes exactly what the study notes compute, and batching seeds changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import Labels, case_yaml, passing_case
from harness.generate import GenerationRequest, generate
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
    for record in records:
        with Image.open(pytester.path / "reports" / record["image"]) as png:
            image = png.convert("RGB")
        # The seed notes, line for line.
        inputs = processor(text=labels, images=image, return_tensors="pt", padding=True)
        with torch.no_grad():
            outputs = model(**inputs)
            probs = outputs.logits_per_image.softmax(dim=1)
            logits = resnet(weights.transforms()(image).unsqueeze(0))
        assert record["clip"]["labels"] == labels
        assert np.abs(np.array(record["clip"]["probs"]) - probs[0].numpy()).max() <= 1e-6
        assert record["resnet"]["top"][0][0] == weights.meta["categories"][int(logits.argmax())]
        assert record["resnet"]["top"][0][1] == pytest.approx(float(logits.softmax(dim=1).max()), abs=1e-6)


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
    batched = generate(pipe, requests)
    for request, together in zip(requests, batched, strict=True):
        (alone,) = generate(pipe, [request])
        a, b = np.asarray(together.image, dtype=np.int16), np.asarray(alone.image, dtype=np.int16)
        # CPU BLAS picks a different kernel for a batch of 3 than for 1; the float images differ
        # by ~1e-6, so an 8-bit pixel may round differently, by one level at most.
        assert np.abs(a - b).max() <= 1
        assert (a != b).mean() < 0.001
    assert not np.array_equal(np.asarray(batched[0].image), np.asarray(batched[1].image))


def test_progress_bars_stay_out_of_pytest_output(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
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
        result = pytester.runpytest_subprocess("-s", *model_args)
    finally:
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    result.assert_outcomes(passed=1)
    assert "it/s" not in result.stdout.str() + result.stderr.str()
    assert "Loading" not in result.stdout.str() + result.stderr.str()
