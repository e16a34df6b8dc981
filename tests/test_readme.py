"""The README's examples work as written (documentation that drifts is worse than none)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import Labels
from harness.cases.case_file import load_case_file

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_case_file_example_parses(tmp_path: Path) -> None:
    block = re.search(r"## The case file\n\n```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block is not None
    path = tmp_path / "example.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    (case,) = load_case_file(path)
    assert case.id == "watercolor-owl" and case.seeds == (0, 1) and case.steps == 50
    assert (
        case.checks["clip"].min_prob == 0.5
        and case.checks.get("resnet") is not None
        and case.checks.get("resnet").expect == ("great grey owl",)
    )
    assert case.tags == ("animals", "style") and case.skip == "reason"


def _judge_example(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    block = re.search(rf"<!-- readme-judge-example: {re.escape(name)} -->\n```\w+\n(.*?)```", text, re.S)
    assert block is not None, f"the README's judge example has no {name} block"
    return block.group(1)


def test_readme_judge_example_runs_end_to_end(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makeconftest(_judge_example("conftest.py"))
    cases = _judge_example("cases/detail.yaml")
    # The tiny models rank labels arbitrarily: the calibrated pair stands in for the example's, and 2 steps for 50.
    cases = re.sub(r"clip: \{.*\}", f"clip: {clip_labels.passing}", cases)
    pytester.makefile(".yaml", detail="defaults:\n  steps: 2\n" + cases)
    result = pytester.runpytest("detail.yaml", *model_args)
    record = json.loads((pytester.path / "reports/results.json").read_text())["results"][0]
    (score,) = record["detail"]["scores"]
    assert score["name"] == "std" and 0 <= score["value"] <= 1 and record["detail"]["title"] == "Detail"
    assert record["outcome"] == ("passed" if score["value"] >= 0.02 else "failed")
    assert result.ret == (pytest.ExitCode.OK if score["value"] >= 0.02 else pytest.ExitCode.TESTS_FAILED)

    pytester.makefile(".yaml", detail="defaults:\n  steps: 2\n" + cases.replace("min_std: 0.02", "min_std: 1.0"))
    failing = pytester.runpytest("detail.yaml", *model_args)
    failing.assert_outcomes(failed=1)
    failing.stdout.fnmatch_lines([f"pixel standard deviation {score['value']:.4f}, at least 1 expected"])


@pytest.mark.parametrize(
    ("marker", "computed"),
    [
        ("guidance-table", lambda s: s.format_guidance_table(s.guidance_table())),
        ("interval-table", lambda s: s.format_interval_table(s.interval_table())),
    ],
)
def test_readme_seed_tables_are_what_the_code_computes(marker: str, computed: Any) -> None:
    from harness.common import rate_statistics

    block = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", README.read_text(encoding="utf-8"), re.S)
    assert block is not None, f"the README has no {marker}"
    assert block.group(1) == computed(rate_statistics)


def test_readme_pass_rate_example_parses(tmp_path: Path) -> None:
    block = re.search(r"## Pass rates over seeds\n.*?```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block is not None
    path = tmp_path / "rates.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    (case,) = load_case_file(path)
    assert (case.seeds, case.min_pass_rate, case.rate_gated) == (tuple(range(16)), 0.75, True)


@pytest.mark.parametrize(
    "heading",
    ["## Yes/no questions: the `vqa:` check", "## Objects: counts, colours and positions", "## Several judges"],
)
def test_readme_judge_section_examples_parse(tmp_path: Path, heading: str) -> None:
    from harness.judging.builtin import builtin_judges
    from harness.judging.objects import ObjectsJudge
    from harness.judging.vqa import VqaJudge

    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    section = section[: section.index("\n## ", 3)]
    blocks = [block for block in re.findall(r"```yaml\n(.*?)```", section, re.S) if "cases:" in block]
    assert blocks, f"no case-file example under {heading!r}"
    for number, block in enumerate(blocks):
        path = tmp_path / f"example-{number}.yaml"
        path.write_text(block, encoding="utf-8")
        assert load_case_file(path, [*builtin_judges(), VqaJudge(), ObjectsJudge()])
