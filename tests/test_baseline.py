"""Baselines: --t2i-save-baseline writes reviewable JSON, --t2i-baseline fails drift beyond the tolerance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Labels, case_yaml
from harness.judging.clip import clip_verdict
from harness.judging.resnet import resnet_verdict
from harness.reports.baseline import ItemScores, classify


def _suite(labels: Labels, extra: str = "") -> str:
    return case_yaml(
        f"""
        - id: strict
          prompt: "{labels.prompt}"
          clip: {labels.passing}
        - id: lenient
          prompt: "{labels.prompt}"
          tolerance: 0.3
          clip: {labels.passing}
        - id: bad
          prompt: "{labels.prompt}"
          clip: {labels.failing}
        {extra}""",
        seeds="[0, 1]",
    )


def _results(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    records = json.loads((pytester.path / "reports/results.json").read_text())["results"]
    return {f"{r['case']}[seed={r['seed']}]": r for r in records}


def test_save_writes_one_sorted_json_file_per_case_file(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=_suite(clip_labels))
    pytester.mkdir("more")
    pytester.path.joinpath("more/other.yaml").write_text(
        case_yaml(
            f"""
            - id: other
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            """
        )
    )
    result = pytester.runpytest("suite.yaml", "more/other.yaml", "--t2i-save-baseline=main", *model_args)
    result.assert_outcomes(passed=5, failed=2)  # saving does not change any verdict
    result.stdout.fnmatch_lines(
        ["t2i baseline 'main' saved to *baselines/main: 2 file(s), 7 new, 0 updated, 0 removed item(s)"]
    )

    path = pytester.path / "baselines/main/suite.yaml.json"
    assert (pytester.path / "baselines/main/more/other.yaml.json").is_file()
    text = path.read_text()
    document = json.loads(text)
    # Sorted keys and a fixed indent: saving the same scores again gives the same bytes.
    assert text == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert document["baseline"] == "main" and document["file"] == "suite.yaml" and document["version"] == 1
    records = _results(pytester)
    assert sorted(document["items"]) == sorted(k for k, r in records.items() if r["file"] == "suite.yaml")
    for key, entry in document["items"].items():
        probs = records[key]["clip"]["probs"]
        assert entry["clip"]["prob"] == round(probs[0], 4)
        assert entry["clip"]["margin"] == round(probs[0] - max(probs[1:]), 4)
        assert entry["clip"]["passed"] is records[key]["clip"]["passed"]
        assert entry["clip"]["labels"] == records[key]["clip"]["labels"]
        assert entry["cache_key"] == records[key].get("cache_key")
    assert document["items"]["bad[seed=0]"]["clip"]["passed"] is False

    again = pytester.runpytest("suite.yaml", "--t2i-save-baseline=main", *model_args)
    again.stdout.fnmatch_lines(["*1 file(s), 0 new, 6 updated, 0 removed item(s)"])
    assert path.read_text() == text


def _shift(path: Path, keys: list[str], *, prob: float = 0.0, passed: bool | None = None) -> None:
    """Edit a saved baseline as if an earlier run had scored these items differently."""
    document = json.loads(path.read_text())
    for key in keys:
        clip = document["items"][key]["clip"]
        clip["prob"] += prob
        clip["margin"] += prob
        if passed is not None:
            clip["passed"] = passed
    path.write_text(json.dumps(document, indent=2, sort_keys=True))


def test_compare_fails_drops_beyond_the_tolerance_and_flips_and_reports_new_items(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=_suite(clip_labels))
    pytester.runpytest("suite.yaml", "--t2i-save-baseline=main", *model_args).assert_outcomes(passed=4, failed=2)
    path = pytester.path / "baselines/main/suite.yaml.json"
    # The baseline scored strict and lenient 0.08 higher, and bad[seed=1] passing.
    _shift(path, ["strict[seed=0]", "strict[seed=1]", "lenient[seed=0]", "lenient[seed=1]"], prob=0.08)
    _shift(path, ["bad[seed=1]"], passed=True)
    # A case added since the baseline was saved.
    pytester.makefile(
        ".yaml",
        suite=_suite(
            clip_labels,
            extra=f"""- id: added
          prompt: "{clip_labels.prompt}"
          clip: {clip_labels.passing}
        """,
        ),
    )

    result = pytester.runpytest("suite.yaml", "--t2i-baseline=main", *model_args)
    # strict fails (0.08 > 0.05); lenient passes (its own tolerance 0.3); added is new, not failed.
    result.assert_outcomes(passed=4, failed=4)
    result.stdout.fnmatch_lines(
        [
            "suite.yaml:*: case 'strict', seed 0",
            "baseline 'main': intended-label probability and margin dropped by more than the tolerance 0.05:",
            "                         baseline      now      delta",
            "  CLIP probability         0.*   0.*    -0.0800  <- dropped more than 0.05",
            "  CLIP margin              0.*   0.*    -0.0800  <- dropped more than 0.05",
            "  CLIP verdict               pass     pass",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "suite.yaml:*: case 'bad', seed 1",
            "CLIP picked * over the intended label *",
            "*",
            "*",
            "*",
            "baseline 'main': CLIP verdict went from pass to fail:",
            "*",
            "*",
            "*",
            "  CLIP verdict               pass     fail  <- flipped",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "t2i baseline 'main' (tolerance 0.05): 3 regressed, 0 improved, 3 unchanged, 2 new; "
            "cases: 2 regressed, 0 improved, 1 unchanged, 1 new"
        ]
    )
    records = _results(pytester)
    assert records["added[seed=0]"]["outcome"] == "passed"
    assert records["added[seed=0]"]["baseline"]["status"] == "new"
    assert records["lenient[seed=0]"]["baseline"]["tolerance"] == 0.3
    assert records["lenient[seed=0]"]["baseline"]["status"] == "unchanged"
    assert records["strict[seed=0]"]["baseline"]["prob_delta"] == pytest.approx(-0.08, abs=1e-4)
    assert records["bad[seed=1]"]["baseline"]["flips"] == ["CLIP"]

    # A wider tolerance on the command line accepts the drop; the flip still fails.
    wider = pytester.runpytest("suite.yaml", "--t2i-baseline=main", "--t2i-tolerance=0.2", *model_args)
    wider.assert_outcomes(passed=6, failed=2)
    # Comparing never writes the baseline: updating it is always explicit.
    assert json.loads(path.read_text())["items"]["bad[seed=1]"]["clip"]["passed"] is True


def test_ini_options_and_saving_merges_and_drops_deleted_cases(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=_suite(clip_labels))
    pytester.makeini("[pytest]\nt2i_baseline = main\nt2i_tolerance = 0.2\n")
    # The ini names a baseline that does not exist yet: allowed only when this run saves it.
    first = pytester.runpytest("suite.yaml", "--t2i-save-baseline=main", *model_args)
    first.stdout.fnmatch_lines(
        ["t2i baseline 'main' (tolerance 0.2): 0 regressed, 0 improved, 0 unchanged, 6 new; cases: * 3 new"]
    )
    path = pytester.path / "baselines/main/suite.yaml.json"
    _shift(path, ["strict[seed=0]"], prob=0.1)  # within the ini's 0.2

    # Delete case 'bad' and save only 'strict' again: 'lenient' keeps its entries, 'bad' loses them.
    pytester.makefile(".yaml", suite=_suite(clip_labels).split("  - id: bad")[0])
    second = pytester.runpytest("suite.yaml", "-k", "strict", "--t2i-save-baseline=main", *model_args)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(
        [
            "t2i baseline 'main' (tolerance 0.2): 0 regressed, 0 improved, 2 unchanged, 0 new; "
            "cases: 0 regressed, 0 improved, 1 unchanged, 0 new",
            "*1 file(s), 0 new, 2 updated, 2 removed item(s)",
        ]
    )
    items = json.loads(path.read_text())["items"]
    assert sorted(items) == ["lenient[seed=0]", "lenient[seed=1]", "strict[seed=0]", "strict[seed=1]"]
    assert items["strict[seed=0]"]["clip"]["prob"] == round(_results(pytester)["strict[seed=0]"]["clip"]["probs"][0], 4)


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--t2i-save-baseline=../escape"], "", "--t2i-save-baseline='../escape' is not a baseline name: *"),
        (
            ["--t2i-baseline=nightly"],
            "",
            "--t2i-baseline='nightly': there is no baseline * (saved baselines: none yet)*",
        ),
        ([], "t2i_baseline = a/b", "--t2i-baseline (ini option t2i_baseline)='a/b' is not a baseline name*"),
        (["--t2i-tolerance=1.5"], "", "--t2i-tolerance='1.5' is not a tolerance: give a number in [[]0, 1]*"),
        ([], "t2i_tolerance = lots", "--t2i-tolerance (ini option t2i_tolerance)='lots' is not a tolerance*"),
    ],
)
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], ini: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_bad_case_tolerance_is_a_collection_error(pytester: pytest.Pytester, clip_labels: Labels) -> None:
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: owl
              prompt: "{clip_labels.prompt}"
              tolerance: 2
              clip: {clip_labels.passing}
            """
        ),
    )
    result = pytester.runpytest("suite.yaml")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error stops the run before any item
    result.stdout.fnmatch_lines(["*suite.yaml:*: case 'owl': 'tolerance' must be a number in [[]0, 1]*"])
    assert "passed" not in result.stdout.str()


def _scores(
    prob: float,
    margin: float,
    clip_passed: bool = True,
    resnet_passed: bool | None = None,
    labels: tuple[str, ...] = ("a", "b"),
) -> ItemScores:
    # Two labels whose probabilities give this intended-label probability and margin (a third gets the rest).
    probs = [prob, prob - margin] + ([1 - 2 * prob + margin] if len(labels) > 2 else [])
    verdicts = {"clip": clip_verdict(labels, probs, clip_passed)}
    if resnet_passed is not None:
        verdicts["resnet"] = resnet_verdict(("x",), (0.5,), 1, (("x", 0.5),), resnet_passed)
    scores = ItemScores.of("c", 0, None, verdicts)
    assert scores is not None
    return scores


@pytest.mark.parametrize(
    ("before", "after", "status"),
    [
        (_scores(0.92, 0.84), _scores(0.87, 0.79), "unchanged"),  # a drop of exactly the tolerance passes
        (_scores(0.92, 0.84), _scores(0.86, 0.84), "regressed"),  # probability
        (_scores(0.92, 0.84), _scores(0.92, 0.78), "regressed"),  # margin alone
        (_scores(0.92, 0.84), _scores(0.98, 0.84), "improved"),
        (_scores(0.55, 0.1), _scores(0.55, 0.1, clip_passed=False), "regressed"),  # a flip, whatever the numbers
        (_scores(0.55, 0.1, resnet_passed=True), _scores(0.55, 0.1, resnet_passed=False), "regressed"),
        (_scores(0.55, 0.1, resnet_passed=False), _scores(0.55, 0.1, resnet_passed=True), "improved"),
        (None, _scores(0.5, 0.0), "new"),
    ],
)
def test_classify(before: ItemScores | None, after: ItemScores, status: str) -> None:
    assert classify(before, after, 0.05).status == status


def test_changed_labels_make_an_item_new() -> None:
    before = _scores(0.9, 0.8)
    after = _scores(0.5, 0.1, labels=("a", "b", "another distractor"))
    drift = classify(before, after, 0.05)
    assert drift.status == "new" and "labels changed" in drift.note
