"""An item passes only when every check it declares was computed on its own image.

An error while scoring one image fails that item alone, with its own message; the rest of its batch is
still scored. All on the tiny models' real inference; faults are injected with forward hooks and
scorer subclasses in a conftest.py, as a user's own code would bring them.
"""

from __future__ import annotations

import json

import pytest

from conftest import Labels, case_yaml


def records(pytester: pytest.Pytester) -> dict[str, dict]:
    document = json.loads((pytester.path / "reports" / "results.json").read_text())
    return {record["id"]: record for record in document["results"]}


def assert_every_pass_is_scored(found: dict[str, dict]) -> None:
    for record in found.values():
        if record["outcome"] == "passed":
            assert record["clip"] is not None and record["fault"] is None, record["id"]


LONG_LABEL = "a photo of " + " ".join(["an owl"] * 60)  # about 130 tokens: CLIP reads 77


def mixed_suite(labels: Labels) -> str:
    return case_yaml(
        f"""
        - id: good
          prompt: "{labels.prompt}"
          clip: {labels.passing}
        - id: long
          prompt: "{labels.prompt}"
          clip:
            expect: "{labels.winner}"
            distractors:
              - "{labels.loser}"
              - "{LONG_LABEL}"
        - id: bad
          prompt: "{labels.prompt}"
          clip: {labels.failing}
        """,
        seeds="[0, 1]",
    )


def test_an_over_long_label_fails_its_own_case_with_its_line_and_the_batch_is_scored(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=mixed_suite(clip_labels))
    # One batch would hold all six images; the over-long label must not take the others down.
    result = pytester.runpytest("suite.yaml", "--t2i-no-cache", "--t2i-batch-size=8", *model_args)
    result.assert_outcomes(passed=2, failed=4)
    found = records(pytester)
    assert_every_pass_is_scored(found)
    for seed in (0, 1):
        assert found[f"suite.yaml::good[seed={seed}]"]["outcome"] == "passed"
        bad = found[f"suite.yaml::bad[seed={seed}]"]
        assert bad["outcome"] == "failed" and bad["clip"]["passed"] is False  # scored, and fails as alone
        long = found[f"suite.yaml::long[seed={seed}]"]
        assert long["outcome"] == "failed" and long["clip"] is None and long["image"] is None
        # Line 15: the over-long label itself (the tiny tokenizer splits it into 310 tokens).
        assert long["fault"].startswith("suite.yaml:15: case 'long': clip.distractors item 2 has 310 tokens") and long[
            "fault"
        ].endswith(
            "tokens, but CLIP's text encoder reads at most 77 (start and end tokens included), so CLIP cannot "
            "score it: shorten the label"
        )
    output = result.stdout.str()
    assert "Traceback" not in output and "IndexError" not in output
    # The failure names the case file and line, not a traceback inside another case's item.
    result.stdout.fnmatch_lines(["*image not scored: suite.yaml:15: case 'long': clip.distractors item 2 has*"])


FLAKY_CLIP = """
import pytest

from harness.common.model_loading import load_clip
from harness.judging.clip import ClipScorer

CALLS = []


class FailsOnTheSecondImage(ClipScorer):
    def image_embeddings(self, images):
        CALLS.append(len(images))
        if len(images) > 1:
            raise RuntimeError("batch forward failed")
        if sum(1 for n in CALLS if n == 1) == 2:
            raise ValueError("this image broke the vision tower")
        return super().image_embeddings(images)


@pytest.fixture(scope="session")
def clip_scorer(t2i_settings):
    model, processor, info = load_clip(t2i_settings)
    return FailsOnTheSecondImage(model=model, processor=processor, device="cpu", info=info)


def pytest_unconfigure(config):
    print("CLIP_CALLS", CALLS)
"""


def test_a_judge_error_fails_only_the_image_it_belongs_to(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makeconftest(FLAKY_CLIP)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f'- id: owl\n  prompt: "{clip_labels.prompt}"\n  clip: {clip_labels.passing}\n', seeds="[0, 1, 2]"
        ),
    )
    result = pytester.runpytest("suite.yaml", "-s", "--t2i-no-cache", *model_args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["CLIP_CALLS [[]3, 1, 1, 1[]]"])  # the batch, then each image alone
    found = records(pytester)
    assert_every_pass_is_scored(found)
    broken = found["suite.yaml::owl[seed=1]"]
    assert broken["clip"] is None
    assert broken["fault"].startswith("CLIP could not score this image: ValueError: this image broke the vision tower")
    result.stdout.fnmatch_lines(["*not scored: CLIP could not score this image: ValueError: this image broke*"])


RESNET_NEVER_SCORES = """
import pytest

from harness.common.model_loading import load_resnet
from harness.judging.resnet import ImagenetClassifier


class Refuses(ImagenetClassifier):
    def probabilities(self, images):
        raise RuntimeError("no verdict today")


@pytest.fixture(scope="session")
def imagenet_classifier(t2i_settings):
    model, transforms, categories, info = load_resnet(t2i_settings)
    return Refuses(model=model, transforms=transforms, categories=categories, device="cpu", info=info)
"""


def test_a_declared_check_without_a_verdict_fails_the_item(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, resnet_top_class: str
) -> None:
    pytester.makeconftest(RESNET_NEVER_SCORES)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f'- id: owl\n  prompt: "{clip_labels.prompt}"\n  clip: {clip_labels.passing}\n'
            f'  resnet: {{expect: ["{resnet_top_class}"]}}\n'
        ),
    )
    result = pytester.runpytest("suite.yaml", "--t2i-no-cache", *model_args)
    result.assert_outcomes(failed=1)  # CLIP passed, but ResNet, which the case declares, gave no verdict
    (record,) = records(pytester).values()
    assert record["clip"]["passed"] is True and record["resnet"] is None
    assert record["fault"].startswith("ResNet-50 could not score this image: RuntimeError: no verdict today")
    result.stdout.fnmatch_lines(["CLIP picked the intended label*", "*not scored: ResNet-50 could not score*"])


ONE_PROMPT_BREAKS_THE_PIPELINE = """
import pytest


@pytest.fixture(scope="session", autouse=True)
def breaks_on_one_prompt(t2i_pipeline):
    original = t2i_pipeline.encode_prompt

    def encode_prompt(prompt, *args, **kwargs):
        if any("poison" in p for p in prompt):
            raise ValueError("cannot encode this prompt")
        return original(prompt, *args, **kwargs)

    t2i_pipeline.encode_prompt = encode_prompt
    yield
"""


def test_a_pipeline_error_is_the_fault_of_the_image_that_caused_it(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makeconftest(ONE_PROMPT_BREAKS_THE_PIPELINE)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: fine
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            - id: poisoned
              prompt: "{clip_labels.prompt}, poison"
              clip: {clip_labels.passing}
            """
        ),
    )
    result = pytester.runpytest("suite.yaml", "--t2i-no-cache", "--t2i-batch-size=4", *model_args)
    result.assert_outcomes(passed=1, failed=1)
    found = records(pytester)
    assert found["suite.yaml::fine[seed=0]"]["outcome"] == "passed"
    fault = found["suite.yaml::poisoned[seed=0]"]["fault"]
    assert fault.startswith("the pipeline raised ValueError: cannot encode this prompt (at conftest.py:")
    assert "Traceback" not in result.stdout.str()
