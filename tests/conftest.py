"""Shared fixtures: tiny random-weight models on disk, and a helper to run the plugin on case files."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub, which reads it once: no hub is reachable from test machines,
# so fail fast instead of waiting on the network (in-process pytester runs and subprocesses alike).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `-n`, workers share the cores: torch's per-process thread pool would oversubscribe them (on
    # 2 cores, 2 workers with 2 threads each ran the suite slower than one process). The tiny models
    # gain nothing from intra-op threads anyway. Subprocesses of the tests inherit it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tiny_models import TinyModels, build_tiny_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def model_args(tiny_models: TinyModels) -> list[str]:
    """Command-line options pointing the plugin at the tiny models."""
    return [
        f"--t2i-model={tiny_models.pipeline_dir}",
        f"--t2i-clip-model={tiny_models.clip_dir}",
        f"--t2i-resnet-weights={tiny_models.resnet_path}",
        "--t2i-device=cpu",
    ]


def case_yaml(body: str, *, steps: int = 2, seeds: str = "[0]") -> str:
    """A case file with fast defaults for the tiny models, plus ``body`` (the `cases:` list)."""
    return f"defaults:\n  steps: {steps}\n  seeds: {seeds}\ncases:\n" + textwrap.indent(textwrap.dedent(body), "  ")


def passing_case(labels: Labels, *, prompt: str | None = None, seeds: str = "[0]") -> str:
    """A case file with one case, `owl`, that passes on the tiny models: the calibration prompt and labels."""
    return case_yaml(f'- id: owl\n  prompt: "{prompt or labels.prompt}"\n  clip: {labels.passing}\n', seeds=seeds)


@dataclass(frozen=True)
class Labels:
    """Two labels the tiny CLIP ranks in a known order on the tiny pipeline's images."""

    winner: str
    loser: str
    prompt: str

    @property
    def passing(self) -> str:
        """A `clip:` section (YAML flow mapping) that passes on the calibration prompt's images."""
        return f'{{expect: "{self.winner}", distractors: ["{self.loser}"]}}'

    @property
    def failing(self) -> str:
        """A `clip:` section that fails on them: the intended label is the one CLIP ranks lower."""
        return f'{{expect: "{self.loser}", distractors: ["{self.winner}"]}}'


CALIBRATION_PROMPT = "an owl on a branch"
CANDIDATE_LABELS = ("an owl", "a red car", "a bowl of soup", "a lighthouse", "a violin", "zebra stripes")


@pytest.fixture(scope="session")
def clip_labels(tiny_models: TinyModels) -> Labels:
    """Find, by direct diffusers + transformers inference, a label pair whose order holds for seeds 0-2.

    The tiny models have random weights, so which label wins is arbitrary but deterministic;
    tests use this pair to write cases that certainly pass or certainly fail.
    """
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel, CLIPProcessor

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models.pipeline_dir, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    model = CLIPModel.from_pretrained(tiny_models.clip_dir, use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(tiny_models.clip_dir)
    images = [
        pipe(CALIBRATION_PROMPT, num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        for seed in range(3)
    ]
    inputs = processor(text=list(CANDIDATE_LABELS), images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image  # [images, labels]
    for i, first in enumerate(CANDIDATE_LABELS):
        for j, second in enumerate(CANDIDATE_LABELS):
            if i != j and bool((logits[:, i] > logits[:, j] + 0.05).all()):
                return Labels(winner=first, loser=second, prompt=CALIBRATION_PROMPT)
    raise AssertionError("no label pair with a stable order; widen CANDIDATE_LABELS")


@pytest.fixture(scope="session")
def resnet_top_class(tiny_models: TinyModels, clip_labels: Labels) -> str:
    """ResNet-50's top-1 class on the calibration image (seed 0), by direct torchvision inference."""
    return direct_resnet_top(tiny_models, clip_labels.prompt, seed=0)


def direct_image(tiny_models: TinyModels, prompt: str, seed: int, steps: int = 2):  # type: ignore[no-untyped-def]
    """The image the harness should produce for a case, made by a plain diffusers call."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models.pipeline_dir, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed)).images[0]


def direct_resnet_top(tiny_models: TinyModels, prompt: str, seed: int) -> str:
    import torch
    from safetensors.torch import load_file
    from torchvision.models import ResNet50_Weights, resnet50

    weights = ResNet50_Weights.IMAGENET1K_V2
    model = resnet50()
    model.load_state_dict(load_file(str(tiny_models.resnet_path)))
    model.eval()
    image = direct_image(tiny_models, prompt, seed)
    with torch.no_grad():
        logits = model(weights.transforms()(image).unsqueeze(0))
    return weights.meta["categories"][int(logits.argmax())]


@pytest.fixture(autouse=True)
def _libraries_stay_imported(request: pytest.FixtureRequest) -> None:
    """For tests that run pytest in process: import, once, every module a run of the harness imports."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("_harness_ran_once")


@pytest.fixture(scope="session")
def _harness_ran_once(tiny_models: TinyModels) -> None:
    """Load, generate, score and write once, in this process, with the harness's own code.

    pytester puts sys.modules back as it was after every in-process run, so a module first imported
    during a run (transformers imports CLIP's processor, image processor and auto classes lazily,
    diffusers its pipelines and schedulers) was imported anew by every run: 1.3 s of each 2 s run.
    Imported here, outside any run, they stay. Then what is alive (the libraries) is frozen: every run
    ends with pytest's own gc.collect(), which would otherwise walk all of it (0.35 s each time).
    """
    import gc
    import io

    from harness.common.local_tokenizer import load_local_tokenizer
    from harness.common.model_loading import load_clip, load_pipeline, load_resnet
    from harness.generation.generate import GenerationRequest, generate
    from harness.judging.clip import ClipScorer
    from harness.judging.resnet import ImagenetClassifier
    from harness.pytest_plugin.options import Settings
    from harness.reports.thumbnails import thumbnail_data_uri

    settings = Settings(
        model=str(tiny_models.pipeline_dir),
        clip_model=str(tiny_models.clip_dir),
        resnet_weights=str(tiny_models.resnet_path),
        device="cpu",
        dtype_name="float32",
        report_dir=tiny_models.pipeline_dir.parent,
    )
    pipeline, info = load_pipeline(settings)
    (generated,) = generate(pipeline, [GenerationRequest("an owl", "blurry", 0, 1, 7.5, None, None)])
    assert generated.image is not None
    model, processor, info = load_clip(settings)
    ClipScorer(model=model, processor=processor, device="cpu", info=info).probabilities([generated.image], ["a", "b"])
    resnet, transforms, categories, info = load_resnet(settings)
    ImagenetClassifier(resnet, transforms, categories, "cpu", info).probabilities([generated.image])
    generated.image.save(io.BytesIO(), format="PNG")
    thumbnail_data_uri(generated.image, 32)
    load_local_tokenizer(str(tiny_models.clip_dir), None)
    gc.collect()
    gc.freeze()


# Seeds of the pass-rate tests' cases (tests/test_seed_rates.py): the tiny CLIP's intended-label probability
# differs from seed to seed, so a `min_prob` between two seeds' values makes exactly k of them pass.
SEEDS = 8
_PROBED: dict[str, list[float]] = {}  # per process (one per xdist worker): the first run's probabilities


def rate_case(
    labels: Labels,
    case_id: str,
    *,
    min_prob: float | None = None,
    min_pass_rate: float | None = None,
    extra: str = "",
) -> str:
    """One case of the calibration prompt at seeds 0-7 (a YAML list item, for case_yaml)."""
    clip = f'{{expect: "{labels.winner}", distractors: ["{labels.loser}"]'
    clip += f", min_prob: {min_prob!r}}}" if min_prob is not None else "}"
    lines = [f"- id: {case_id}", f'  prompt: "{labels.prompt}"', f"  seeds: {SEEDS}", f"  clip: {clip}"]
    if min_pass_rate is not None:
        lines.append(f"  min_pass_rate: {min_pass_rate!r}")
    return "\n".join(lines) + "\n" + extra


def threshold_for(probs: list[float], passing: int) -> float:
    """A min_prob that exactly ``passing`` of the seeds reach: halfway between two neighbouring probabilities."""
    ranked = sorted(probs, reverse=True)
    if passing == 0:
        return (ranked[0] + 1) / 2
    if passing == len(ranked):
        return ranked[-1] / 2
    return (ranked[passing - 1] + ranked[passing]) / 2


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rate-cache")


@pytest.fixture
def run_args(model_args: list[str], shared_cache: Path) -> list[str]:
    return [*model_args, f"--t2i-cache-dir={shared_cache}"]


@pytest.fixture
def seed_probs(pytester: pytest.Pytester, run_args: list[str], clip_labels: Labels) -> list[float]:
    """The intended label's CLIP probability at seeds 0-7, as the harness computed it (and cached its inputs)."""
    if "probs" not in _PROBED:
        probe = pytester.path / "probe"
        probe.mkdir()
        (probe / "probe.yaml").write_text(case_yaml(rate_case(clip_labels, "probe")))
        pytester.runpytest("probe/probe.yaml", "--t2i-report-dir=probe/reports", *run_args).assert_outcomes(
            passed=SEEDS
        )
        records = json.loads((probe / "reports/results.json").read_text())["results"]
        _PROBED["probs"] = [r["clip"]["probs"][0] for r in sorted(records, key=lambda r: r["seed"])]
        (probe / "probe.yaml").unlink()  # so that a test's run of its whole folder does not collect it
    probs = _PROBED["probs"]
    assert len(set(probs)) == SEEDS, probs  # the seeds' scores differ, which is what the thresholds need
    return probs
