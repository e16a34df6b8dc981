"""Any diffusers text-to-image pipeline works, SDXL included (two text encoders, its own default size)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import case_yaml
from tiny_models import build_tiny_sdxl


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


def test_sdxl_pipeline_runs_cases_end_to_end(pytester: pytest.Pytester, model_args: list[str], tiny_sdxl: Path) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            """
            - id: plain
              prompt: "an owl on a branch"
              clip: {expect: "an owl", distractors: ["a red car"]}
              resnet: {expect: ["great grey owl"], top_k: 1000}
            - id: with-negative
              prompt: "an owl on a branch"
              negative_prompt: "blurry"
              width: 48
              height: 64
              clip: {expect: "an owl", distractors: ["a red car"]}
            """,
            seeds="[0, 1]",
        ),
    )
    args = [a for a in model_args if not a.startswith("--t2i-model=")]
    result = pytester.runpytest("suite.yaml", f"--t2i-model={tiny_sdxl}", *args)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 4, result.stdout.str()[-2000:]
    records = json.loads((pytester.path / "reports/results.json").read_text())
    sizes = {(r["case"], r["width"], r["height"]) for r in records["results"]}
    assert sizes == {("plain", 64, 64), ("with-negative", 48, 64)}  # SDXL's default, then the case's own
    assert all(r["clip"] is not None and r["fault"] is None for r in records["results"])
    assert records["environment"]["t2i pipeline"].endswith("sdxl-pipeline @ local dir")
