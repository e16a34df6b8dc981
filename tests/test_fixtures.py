"""The model fixtures are public API: loaded once per session, usable and overridable by users."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from PIL import Image

from conftest import Labels, case_yaml


def _cases(labels: Labels, with_resnet: bool) -> str:
    resnet = '\n  resnet: {expect: ["great grey owl"], top_k: 1000}' if with_resnet else ""
    body = "".join(
        f"""
- id: case-{n}
  prompt: "{labels.prompt}"
  clip: {labels.passing}{resnet}
"""
        for n in range(3)
    )
    return case_yaml(body, seeds="[0, 1]")


def test_models_load_once_for_many_cases(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> None:
    pytester.makefile(".yaml", first=_cases(clip_labels, True), second=_cases(clip_labels, True))
    result = pytester.runpytest("--setup-show", *model_args)
    result.assert_outcomes(passed=12)
    output = result.stdout.str()
    for fixture in ("t2i_pipeline", "clip_scorer", "imagenet_classifier"):
        assert output.count(f"SETUP    S {fixture}") == 1, fixture


def test_a_suite_without_resnet_never_loads_it(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=_cases(clip_labels, False))
    result = pytester.runpytest("--setup-show", *model_args)
    result.assert_outcomes(passed=6)
    assert "imagenet_classifier" not in result.stdout.str()


def test_fixtures_can_be_overridden_in_conftest(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    # A user swaps the scheduler: the override wraps the plugin's own fixture.
    swap = textwrap.dedent(
        """
        import pytest
        from diffusers import EulerDiscreteScheduler

        @pytest.fixture(scope="session")
        def t2i_pipeline(t2i_pipeline):
            t2i_pipeline.scheduler = EulerDiscreteScheduler.from_config(t2i_pipeline.scheduler.config)
            print("scheduler swapped")
            return t2i_pipeline
        """
    )
    pytester.makefile(".yaml", suite=_cases(clip_labels, False))
    plain = pytester.runpytest("-p", "no:cacheprovider", "--t2i-report-dir=plain", *model_args)
    pytester.makeconftest(swap)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", *model_args)
    assert result.stdout.str().count("scheduler swapped") == 1
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 6 and "errors" not in outcomes
    assert plain.ret == pytest.ExitCode.OK
    # The override was used: every image differs from the plain pipeline's (another sampler).
    for seed in (0, 1):
        for n in range(3):
            name = f"images/suite.yaml/case-{n}-seed{seed}.png"
            with Image.open(pytester.path / "plain" / name) as a, Image.open(pytester.path / "reports" / name) as b:
                assert not np.array_equal(np.asarray(a), np.asarray(b)), name


def test_plain_python_tests_can_use_the_fixtures(pytester: pytest.Pytester, model_args: list[str]) -> None:
    pytester.makepyfile(
        """
        import torch

        def test_generate_and_score(t2i_pipeline, clip_scorer, imagenet_classifier, t2i_settings):
            image = t2i_pipeline(
                "a lighthouse", num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(0)
            ).images[0]
            probs = clip_scorer.probabilities([image], ["a lighthouse", "a cat"])
            assert probs.shape == (1, 2) and abs(float(probs.sum()) - 1) < 1e-5
            top = imagenet_classifier.top(imagenet_classifier.probabilities([image])[0], k=5)
            assert len(top) == 5 and all(name in imagenet_classifier.categories for name, _ in top)
            assert t2i_settings.device == "cpu"
        """
    )
    pytester.runpytest(*model_args).assert_outcomes(passed=1)
