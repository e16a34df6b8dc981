"""The score cache: a re-run after editing labels or thresholds runs neither ResNet-50 nor CLIP's image tower."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import Labels, case_yaml
from harness.judging.score_cache import ScoreCache
from tiny_models import TinyModels

# Counts the judges' forwards (calls, not images), printed at the end of the session (run with -s).
COUNT_FORWARDS = """
import pytest

COUNTS = {"resnet": 0, "clip_vision": 0, "clip_text": 0}

def counter(name):
    def hook(module, args, output):
        COUNTS[name] += 1
    return hook

@pytest.fixture(scope="session", autouse=True)
def count_forwards(clip_scorer, imagenet_classifier):
    imagenet_classifier.model.register_forward_hook(counter("resnet"))
    clip_scorer.model.vision_model.register_forward_hook(counter("clip_vision"))
    clip_scorer.model.text_model.register_forward_hook(counter("clip_text"))
    yield
    print("FORWARDS", COUNTS)
"""


def suite(labels: str, *, top_k: int = 1000) -> str:
    return case_yaml(
        f"""
        - id: owl
          prompt: "an owl on a branch"
          clip: {labels}
          resnet: {{expect: ["great grey owl"], top_k: {top_k}}}
        - id: fox
          prompt: "a fox in the snow"
          clip: {labels}
          resnet: {{expect: ["red fox"], top_k: {top_k}}}
        """,
        seeds="[0, 1]",
    )


def run(pytester: pytest.Pytester, model_args: list[str], *extra: str) -> dict[str, int]:
    result = pytester.runpytest("suite.yaml", "-s", "--t2i-cache-dir=cache", *model_args, *extra)
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()[-2000:]
    match = re.search(r"FORWARDS (\{.*\})", result.stdout.str())
    assert match, result.stdout.str()[-2000:]
    return json.loads(match.group(1).replace("'", '"'))


def cold_run(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> dict[str, int]:
    """The counting conftest, the suite with passing labels, and a first run that fills both caches."""
    pytester.makeconftest(COUNT_FORWARDS)
    pytester.makefile(".yaml", suite=suite(clip_labels.passing))
    return run(pytester, model_args)


def results(pytester: pytest.Pytester) -> dict[str, dict]:
    document = json.loads((pytester.path / "reports/results.json").read_text())
    return {record["id"]: record for record in document["results"]}


def test_editing_labels_and_thresholds_reruns_no_image_judge(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    cold = cold_run(pytester, model_args, clip_labels)
    assert cold["resnet"] > 0 and cold["clip_vision"] > 0
    first = results(pytester)

    pytester.makefile(".yaml", suite=suite(clip_labels.failing, top_k=5))  # labels and top_k edited
    warm = run(pytester, model_args)
    assert warm["resnet"] == 0 and warm["clip_vision"] == 0
    assert warm["clip_text"] > 0  # the edited labels are new: encoded, as they must be
    second = results(pytester)

    pytester.makefile(".yaml", suite=suite(clip_labels.failing, top_k=5))
    run(pytester, model_args, "--t2i-refresh")  # every judge runs again: the reference
    fresh = results(pytester)
    for item_id, record in second.items():
        assert record["clip"]["passed"] is False  # the verdicts follow the edit
        assert record["clip"]["passed"] == fresh[item_id]["clip"]["passed"]
        assert record["resnet"]["passed"] == fresh[item_id]["resnet"]["passed"]
        # Both runs score the same batch of images (cached embeddings are float32, stored exactly);
        # only the text tower's output for the edited labels is recomputed, with the same shapes.
        assert np.allclose(record["clip"]["probs"], fresh[item_id]["clip"]["probs"], atol=1e-6)
        assert record["resnet"]["top"] == fresh[item_id]["resnet"]["top"]
        assert record["resnet"]["top"] == first[item_id]["resnet"]["top"][:5]


def test_refresh_and_no_cache_run_every_judge(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    cold_run(pytester, model_args, clip_labels)
    refreshed = run(pytester, model_args, "--t2i-refresh")
    assert refreshed["resnet"] > 0 and refreshed["clip_vision"] > 0
    uncached = run(pytester, model_args, "--t2i-no-cache")
    assert uncached["resnet"] > 0 and uncached["clip_vision"] > 0


def test_damaged_entries_are_recomputed_not_used(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    cold_run(pytester, model_args, clip_labels)
    before = results(pytester)
    entries = sorted((pytester.path / "cache/scores").rglob("*.f32"))
    assert len(entries) == 8  # 4 images x (ResNet probabilities + CLIP embedding)
    for entry in entries:
        data = bytearray(entry.read_bytes())
        data[5] ^= 0xFF  # one flipped bit pattern inside the vector
        entry.write_bytes(bytes(data))
    again = run(pytester, model_args)
    assert again["resnet"] > 0 and again["clip_vision"] > 0
    after = results(pytester)
    for item_id, record in after.items():
        assert record["resnet"]["top"] == before[item_id]["resnet"]["top"]
        # Recomputed in the same batch composition as the first run: same kernels, same values.
        assert record["clip"]["probs"] == pytest.approx(before[item_id]["clip"]["probs"], abs=1e-6)
    assert run(pytester, model_args)["resnet"] == 0  # rewritten whole


def test_other_resnet_weights_are_another_judge(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, tiny_models: TinyModels
) -> None:
    from safetensors.torch import load_file, save_file

    cold_run(pytester, model_args, clip_labels)
    weights = load_file(str(tiny_models.resnet_path))
    weights["fc.bias"] = weights["fc.bias"] + 1.0
    save_file(weights, str(pytester.path / "other.safetensors"))
    other = [arg for arg in model_args if not arg.startswith("--t2i-resnet-weights")]
    counts = run(pytester, [*other, "--t2i-resnet-weights=other.safetensors"])
    assert counts["resnet"] > 0 and counts["clip_vision"] == 0


OVERRIDE_CLASSIFIER = """
import pytest

@pytest.fixture(scope="session")
def imagenet_classifier(imagenet_classifier):
    return imagenet_classifier  # stands for a wrapper around another model
"""


def test_a_judge_overridden_in_conftest_always_runs(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    cold_run(pytester, model_args, clip_labels)
    pytester.mkdir("sub")
    (pytester.path / "sub/conftest.py").write_text(OVERRIDE_CLASSIFIER)
    (pytester.path / "suite.yaml").rename(pytester.path / "sub/suite.yaml")
    result = pytester.runpytest("sub/suite.yaml", "-s", "--t2i-cache-dir=cache", *model_args)
    counts = json.loads(re.search(r"FORWARDS (\{.*\})", result.stdout.str()).group(1).replace("'", '"'))
    assert counts["resnet"] > 0 and counts["clip_vision"] == 0


JUDGE = "a" * 64
IMAGE = "b" * 64


def test_entries_round_trip_and_anything_damaged_is_a_miss(tmp_path: Path) -> None:
    cache = ScoreCache(tmp_path)
    vector = np.linspace(-1, 1, 10, dtype=np.float32)
    assert cache.get(JUDGE, IMAGE, 10) is None
    cache.put(JUDGE, IMAGE, vector)
    assert np.array_equal(cache.get(JUDGE, IMAGE, 10), vector)
    assert cache.get(JUDGE, IMAGE, 11) is None  # another length: another kind of vector
    assert cache.get(JUDGE, "c" * 64, 10) is None
    path = cache.path_for(JUDGE, IMAGE)
    path.write_bytes(path.read_bytes()[:-1])  # truncated
    assert cache.get(JUDGE, IMAGE, 10) is None
    cache.put(JUDGE, IMAGE, np.array([np.nan] * 10, dtype=np.float32))
    assert cache.get(JUDGE, IMAGE, 10) is None


@pytest.mark.parametrize("swap", ["image", "judge"])
def test_an_entry_under_another_entrys_name_is_a_miss(tmp_path: Path, swap: str) -> None:
    cache = ScoreCache(tmp_path)
    other_image, other_judge = ("c" * 64, JUDGE) if swap == "image" else (IMAGE, "d" * 64)
    cache.put(JUDGE, IMAGE, np.zeros(10, dtype=np.float32))
    cache.put(other_judge, other_image, np.ones(10, dtype=np.float32))
    mine, theirs = cache.path_for(JUDGE, IMAGE), cache.path_for(other_judge, other_image)
    data_mine, data_theirs = mine.read_bytes(), theirs.read_bytes()
    mine.write_bytes(data_theirs)  # swapped: each file is whole and self-consistent, but another key's
    theirs.write_bytes(data_mine)
    assert cache.get(JUDGE, IMAGE, 10) is None
    assert cache.get(other_judge, other_image, 10) is None


def test_swapped_entries_in_a_run_are_recomputed_not_reported(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    cold_run(pytester, model_args, clip_labels)
    before = results(pytester)
    entries = sorted((pytester.path / "cache/scores").rglob("*.f32"))
    by_length: dict[int, list[Path]] = {}
    for entry in entries:
        by_length.setdefault(len(entry.read_bytes()), []).append(entry)
    for same_kind in by_length.values():  # swap each ResNet entry with another, each CLIP one likewise
        contents = [entry.read_bytes() for entry in same_kind]
        for entry, content in zip(same_kind, contents[1:] + contents[:1], strict=True):
            entry.write_bytes(content)
    again = run(pytester, model_args)
    assert again["resnet"] > 0 and again["clip_vision"] > 0  # nothing swapped was believed
    for item_id, record in results(pytester).items():
        assert record["resnet"]["top"] == before[item_id]["resnet"]["top"]  # each item's own image's scores
        assert record["clip"]["probs"] == before[item_id]["clip"]["probs"]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "a" * 63, ""])
def test_keys_must_be_digests(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a sha256 hex digest"):
        ScoreCache(tmp_path).path_for(JUDGE, bad)
