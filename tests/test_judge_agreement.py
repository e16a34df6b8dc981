"""Several judges on one image: the summary says how often each pair of judges agrees on this run's images."""

from __future__ import annotations

import re
from html import unescape

import pytest

from conftest import Labels, case_yaml


def test_the_summary_counts_how_often_judges_agree(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, resnet_top_class: str
) -> None:
    other = "goldfish" if resnet_top_class != "goldfish" else "tench"
    prompt = clip_labels.prompt
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: both-pass
              prompt: "{prompt}"
              clip: {clip_labels.passing}
              resnet: {{expect: ["{resnet_top_class}"]}}
            - id: only-clip-passes
              prompt: "{prompt}"
              clip: {clip_labels.passing}
              resnet: {{expect: ["{other}"]}}
            - id: only-resnet-passes
              prompt: "{prompt}"
              clip: {clip_labels.failing}
              resnet: {{expect: ["{resnet_top_class}"]}}
            - id: clip-alone
              prompt: "{prompt}"
              clip: {clip_labels.passing}
            """
        ),
    )
    result = pytester.runpytest("suite.yaml", "--html=reports/report.html", "--self-contained-html", *model_args)
    result.assert_outcomes(passed=2, failed=2)
    page = (pytester.path / "reports/report.html").read_text()
    row = re.search(r'<tr data-key="clip/resnet">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = [unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))]
    # Three images have both verdicts (the CLIP-only case is not counted): one agreement, one each way.
    assert cells == ["CLIP / ResNet", "3", "1", "33.3%", "1", "0", "1", "1"]
    assert page.count('id="t2i-agreement"') == 1


def test_no_agreement_table_with_one_judge(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(
        ".yaml", suite=case_yaml(f'- id: a\n  prompt: "{clip_labels.prompt}"\n  clip: {clip_labels.passing}\n')
    )
    pytester.runpytest("suite.yaml", "--html=reports/report.html", "--self-contained-html", *model_args)
    assert "t2i-agreement" not in (pytester.path / "reports/report.html").read_text()
