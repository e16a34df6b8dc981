"""Prompt quality as a rate over seeds: `seeds: N`, `min_pass_rate`, intervals, unstable cases, baselines of rates.

The tiny models' CLIP ranks the calibration labels the same way on every seed, but the intended label's
probability differs from seed to seed. A `min_prob` between two seeds' probabilities makes exactly k of 8
seeds pass. The probabilities are read from the harness's own first run, and every later run here reads the
same images and image embeddings back from one shared cache, so its scores are bit-identical to the ones the
thresholds were computed from (no tolerance is needed: like is compared with like).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from conftest import SEEDS, Labels, case_yaml, rate_case, threshold_for
from harness.judging.clip import clip_verdict
from harness.reports.baseline import ItemScores, classify

# Student's t quantile for a two-sided 95% interval with 7 degrees of freedom, from the printed tables.
T_975_DF7 = 2.364624
Z_975 = 1.959963984540054  # the normal quantile the Wilson interval uses


def results(pytester: pytest.Pytester, report_dir: str = "reports") -> dict[str, Any]:
    return json.loads((pytester.path / report_dir / "results.json").read_text())  # type: ignore[no-any-return]


def wilson(passed: int, run: int) -> tuple[float, float]:
    """The textbook Wilson score interval, written out independently of the harness's code."""
    p = passed / run
    centre = p + Z_975**2 / (2 * run)
    spread = Z_975 * math.sqrt(p * (1 - p) / run + Z_975**2 / (4 * run**2))
    return ((centre - spread) / (1 + Z_975**2 / run), (centre + spread) / (1 + Z_975**2 / run))


def test_the_gate_just_above_and_below_the_rate(
    pytester: pytest.Pytester, run_args: list[str], clip_labels: Labels, seed_probs: list[float]
) -> None:
    min_prob = threshold_for(seed_probs, 5)  # 5 of 8 seeds pass: a rate of 0.625
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            rate_case(clip_labels, "at-the-gate", min_prob=min_prob, min_pass_rate=0.625)
            + rate_case(clip_labels, "just-below-the-gate", min_prob=min_prob, min_pass_rate=0.624)
            + rate_case(clip_labels, "just-above-the-gate", min_prob=min_prob, min_pass_rate=0.626)
            + rate_case(clip_labels, "every-seed", min_prob=min_prob)
        ),
    )
    result = pytester.runpytest("suite.yaml", "-v", *run_args)
    # A rate-gated case is one item; a case without the key is one item per seed, as before.
    result.assert_outcomes(passed=2 + 5, failed=1 + 3)
    result.stdout.fnmatch_lines(
        [
            "*suite.yaml::at-the-gate PASSED*",
            "*suite.yaml::just-below-the-gate PASSED*",
            "*suite.yaml::just-above-the-gate FAILED*",
            "suite.yaml:*: case 'just-above-the-gate', 8 seeds",
            "pass rate below min_pass_rate 0.626: 5 of 8 seeds passed (62.5%, 95% interval 30.6%-86.3%)",
            "  seed 0  *",
        ]
    )
    assert result.stdout.str().count("fail: CLIP picked the intended label, but with") >= 3

    document = results(pytester)
    text = (pytester.path / "reports/results.json").read_text()
    assert text == json.dumps(document, indent=2, ensure_ascii=False) + "\n"  # the incremental writer's bytes
    records = {r["id"]: r for r in document["results"]}
    assert len(records) == 4 * SEEDS  # every seed of every case has its record, image and scores
    assert all((pytester.path / "reports" / r["image"]).is_file() for r in records.values())
    gated = [records[f"suite.yaml::just-above-the-gate[seed={seed}]"] for seed in range(SEEDS)]
    assert [r["outcome"] for r in gated].count("passed") == 5  # each seed's own checks
    assert {r["case_outcome"] for r in gated} == {"failed"}  # and the case's verdict
    assert {r["min_pass_rate"] for r in gated} == {0.626}

    # The `cases` list, against the per-seed records and independently computed statistics.
    cases = {entry["case"]: entry for entry in document["cases"]}
    assert list(cases) == ["at-the-gate", "just-below-the-gate", "just-above-the-gate", "every-seed"]
    expected_passed = {"at-the-gate": True, "just-below-the-gate": True, "just-above-the-gate": False}
    for case, entry in cases.items():
        own = [r for r in document["results"] if r["case"] == case]
        passed = sum(r["clip"]["passed"] for r in own)
        probs = [r["clip"]["probs"][0] for r in own]
        low, high = wilson(passed, len(own))
        assert (entry["file"], entry["seeds_run"], entry["seeds_passed"]) == ("suite.yaml", SEEDS, 5)
        assert entry["pass_rate"] == pytest.approx(5 / 8, abs=1e-12)
        assert entry["interval"] == pytest.approx([low, high], abs=1e-12)
        assert entry["interval"] == pytest.approx([0.3057, 0.8632], abs=5e-5)  # to 4 places, as published
        assert entry["unstable"] is True
        assert entry["passed"] is expected_passed.get(case, False)
        assert entry["min_pass_rate"] == {"at-the-gate": 0.625, "just-below-the-gate": 0.624}.get(
            case, 0.626 if case == "just-above-the-gate" else None
        )
        prob = entry["scores"]["clip"]["prob"]
        mean, spread = statistics.fmean(probs), T_975_DF7 * statistics.stdev(probs) / math.sqrt(SEEDS)
        assert prob["n"] == SEEDS and prob["mean"] == pytest.approx(mean, abs=1e-12)
        # The t table's quantile has 7 digits: the interval agrees to well within that.
        assert prob["interval"] == pytest.approx([mean - spread, mean + spread], abs=1e-6)
        assert prob["label"] == "CLIP intended-label probability" and prob["gated"] is True

    report = (pytester.path / "reports").glob("*.html")
    assert not list(report)  # no --html here; the summary is tested with the report below


def test_a_rate_gated_case_under_lf_k_m_and_x(
    pytester: pytest.Pytester, run_args: list[str], clip_labels: Labels, seed_probs: list[float]
) -> None:
    min_prob = threshold_for(seed_probs, 4)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            rate_case(clip_labels, "fails-first", min_prob=min_prob, min_pass_rate=0.9, extra="  tags: [owls]\n")
            + rate_case(clip_labels, "passes", min_prob=min_prob, min_pass_rate=0.5)
            + rate_case(clip_labels, "fails-too", min_prob=min_prob, min_pass_rate=0.9)
            + rate_case(clip_labels, "plain", min_prob=threshold_for(seed_probs, SEEDS))
        ),
    )
    pytester.runpytest("suite.yaml", *run_args).assert_outcomes(passed=1 + SEEDS, failed=2)
    # -x stops at the first failing case, once all its seeds have run.
    result = pytester.runpytest("suite.yaml", "-x", *run_args)
    result.assert_outcomes(failed=1)
    assert len(results(pytester)["results"]) == SEEDS
    # --lf reruns the failed cases, each with all of its seeds.
    pytester.runpytest("suite.yaml", *run_args)
    result = pytester.runpytest("suite.yaml", "--lf", "-v", *run_args)
    result.assert_outcomes(failed=2)
    assert {r["case"] for r in results(pytester)["results"]} == {"fails-first", "fails-too"}
    assert len(results(pytester)["results"]) == 2 * SEEDS
    # -k and -m select whole cases; a seed's word selects the seed items of cases without the gate only.
    pytester.runpytest("suite.yaml", "-k", "passes", *run_args).assert_outcomes(passed=1)
    pytester.runpytest("suite.yaml", "-m", "owls", *run_args).assert_outcomes(failed=1)
    result = pytester.runpytest("suite.yaml", "-k", "[seed1]", *run_args)
    result.assert_outcomes(passed=1)
    assert [r["id"] for r in results(pytester)["results"]] == ["suite.yaml::plain[seed=1]"]
    # The node id runs one case.
    pytester.runpytest("suite.yaml::passes", *run_args).assert_outcomes(passed=1)


def test_baseline_rates_regress_beyond_chance_only(
    pytester: pytest.Pytester, run_args: list[str], clip_labels: Labels, seed_probs: list[float]
) -> None:
    def suite(passing: int) -> None:
        pytester.makefile(
            ".yaml",
            suite=case_yaml(
                rate_case(clip_labels, "owl", min_prob=threshold_for(seed_probs, passing), min_pass_rate=0.25)
            ),
        )

    suite(SEEDS)
    pytester.runpytest("suite.yaml", "--t2i-save-baseline=main", *run_args).assert_outcomes(passed=1)
    saved = json.loads((pytester.path / "baselines/main/suite.yaml.json").read_text())
    assert saved["cases"]["owl"]["seeds_run"] == SEEDS and saved["cases"]["owl"]["seeds_passed"] == SEEDS
    assert saved["cases"]["owl"]["interval"] == [round(x, 4) for x in wilson(SEEDS, SEEDS)]
    assert set(saved["cases"]["owl"]["scores"]["clip"]) == {"prob", "margin"}

    # 8 of 8, then 6 of 8: one-sided Fisher's exact p = C(14,6) C(2,2) / C(16,8) = 3003/12870 = 0.233: chance.
    suite(6)
    result = pytester.runpytest("suite.yaml", "--t2i-baseline=main", *run_args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["t2i baseline 'main' (tolerance 0.05): *; cases: 0 regressed, 0 improved, 1 unchanged*"]
    )
    (entry,) = results(pytester)["cases"]
    assert entry["baseline"]["status"] == "unchanged"
    assert entry["baseline"]["drop_p"] == pytest.approx(3003 / 12870, abs=1e-12)

    # 8 of 8, then 2 of 8: p = C(10,2) C(6,6) / C(16,8) = 45/12870 = 0.0035 < 0.05: a regression, though the
    # case's own gate (25%) is still met.
    suite(2)
    result = pytester.runpytest("suite.yaml", "--t2i-baseline=main", "--html=reports/report.html", *run_args)
    result.assert_outcomes(failed=1)
    page = (pytester.path / "reports/report.html").read_text()
    assert 'rate-gated cases: <span data-case-status="regressed">1 regressed</span>' in page
    result.stdout.fnmatch_lines(
        [
            "baseline 'main': the pass rate dropped from 8 of 8 seeds passed (100%, *) to 2 of 8 seeds passed "
            "(25%, *); one-sided Fisher's exact p = 0.0035 < 0.05, more than chance explains",
            "t2i baseline 'main' (tolerance 0.05): *; cases: 1 regressed, 0 improved, 0 unchanged*",
        ]
    )
    (entry,) = results(pytester)["cases"]
    assert (entry["passed"], entry["baseline"]["status"]) == (False, "regressed")
    assert entry["baseline"]["drop_p"] == pytest.approx(45 / 12870, abs=1e-12)

    # The mean score: the same 8 of 8 images against a baseline whose mean was 0.2 higher regress (beyond the
    # tolerance even at the top of the 95% interval); 0.02 higher is within it.
    suite(SEEDS)
    for raised, outcome in ((0.02, "passed"), (0.2, "failed")):
        changed = json.loads(json.dumps(saved))
        changed["cases"]["owl"]["scores"]["clip"]["prob"]["mean"] += raised
        (pytester.path / "baselines/main/suite.yaml.json").write_text(json.dumps(changed))
        result = pytester.runpytest("suite.yaml", "--t2i-baseline=main", *run_args)
        result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["baseline 'main': mean CLIP intended-label probability went from *"])


def test_an_improved_mean_is_named_when_the_rates_did_not_move() -> None:
    from harness.reports.case_rates import SeedResult, case_rate, compare_rates

    def rate(prob: float) -> Any:
        seeds = [
            SeedResult(
                seed, True, {"clip": clip_verdict(("a", "b"), [prob + seed / 1000, 1 - prob - seed / 1000], True)}
            )
            for seed in range(SEEDS)
        ]
        return case_rate("suite.yaml", "owl", seeds, 0.5)

    drift = compare_rates(rate(0.6), rate(0.9), 0.05)
    assert drift.status == "improved" and drift.before is not None and drift.before.seeds_passed == SEEDS
    lines = drift.explain("main").splitlines()
    assert lines[0].startswith("baseline 'main': mean CLIP intended-label probability went from 0.6035 to 0.9035")
    assert "better by more than the tolerance 0.05" in lines[0]
    assert lines[-1].startswith("baseline 'main': improved beyond chance or the tolerance 0.05: 8 of 8 seeds")


def test_negative_gated_scores_keep_their_interval_and_do_not_rise_by_themselves() -> None:
    from harness.reports.case_rates import SeedResult, case_rate, compare_rates

    def rate(shift: float) -> Any:
        # The intended label loses: CLIP's margin (gated, a difference of probabilities) is negative on every seed.
        seeds = [
            SeedResult(
                seed,
                False,
                {"clip": clip_verdict(("a", "b"), [0.1 + shift + seed / 1000, 0.9 - shift - seed / 1000], False)},
            )
            for seed in range(SEEDS)
        ]
        return case_rate("suite.yaml", "owl", seeds, 0.5)

    margin = rate(0.0).scores["clip"]["margin"]
    assert margin.low is not None and margin.high is not None
    assert margin.low < margin.mean < margin.high < 0  # it was [0, 0], clamped to a probability's scale
    assert compare_rates(rate(0.0), rate(0.0003), 0.05).status == "unchanged"  # it read as "improved"


def test_an_unchanged_cache_key_with_other_pixels_is_nondeterminism() -> None:
    def scores(prob: float, passed: bool, cache_key: str | None, pixels: str | None) -> ItemScores:
        found = ItemScores.of("c", 0, cache_key, {"clip": clip_verdict(("a", "b"), [prob, 1 - prob], passed)}, pixels)
        assert found is not None
        return found

    before = scores(0.9, True, "key", "pixels-1")
    # The same inputs, other pixels (a GPU kernel, another batch): the verdict's change is not a regression.
    drift = classify(before, scores(0.4, False, "key", "pixels-2"), 0.05)
    assert drift.status == "nondeterministic" and "cache key is unchanged" in drift.note
    assert "nondeterministic, not a regression" in drift.explain("main")
    assert classify(before, scores(0.95, True, "key", "pixels-2"), 0.0).status == "nondeterministic"
    # The same pixels: the change is the judge's or the check's, so it regresses as before.
    assert classify(before, scores(0.4, False, "key", "pixels-1"), 0.05).status == "regressed"
    # Other inputs: a regression.
    assert classify(before, scores(0.4, False, "other-key", "pixels-2"), 0.05).status == "regressed"
    # A baseline saved before pixels were recorded: the cache key alone decides, as the issue asks.
    legacy = scores(0.9, True, "key", None)
    assert classify(legacy, scores(0.4, False, "key", "pixels-2"), 0.05).status == "nondeterministic"
    # No change at all is unchanged, pixels or not.
    assert classify(before, scores(0.9, True, "key", "pixels-2"), 0.05).status == "unchanged"


def test_seeds_as_a_count_and_min_pass_rate_in_the_case_file(tmp_path: Path) -> None:
    from harness.cases.case_file import CaseFileError, load_case_file

    path = tmp_path / "suite.yaml"
    path.write_text(
        "defaults:\n  min_pass_rate: 0.75\n  seeds: 8\ncases:\n"
        '  - id: counted\n    prompt: "an owl"\n    clip: {expect: "an owl", distractors: ["a hawk"]}\n'
        '  - id: listed\n    prompt: "an owl"\n    seeds: [42]\n    min_pass_rate: 1\n'
        '    clip: {expect: "an owl", distractors: ["a hawk"]}\n'
    )
    counted, listed = load_case_file(path)
    assert (counted.seeds, counted.min_pass_rate, counted.rate_gated) == (tuple(range(8)), 0.75, True)
    assert (listed.seeds, listed.min_pass_rate) == ((42,), 1.0)

    path.write_text(
        "cases:\n"
        '  - id: none\n    prompt: "an owl"\n    seeds: 0\n    min_pass_rate: 0\n'
        '    clip: {expect: "an owl", distractors: ["a hawk"]}\n'
        '  - id: many\n    prompt: "an owl"\n    seeds: 10001\n    min_pass_rate: 1.5\n'
        '    clip: {expect: "an owl", distractors: ["a hawk"]}\n'
        '  - id: text\n    prompt: "an owl"\n    min_pass_rate: "75%"\n'
        '    clip: {expect: "an owl", distractors: ["a hawk"]}\n'
    )
    with pytest.raises(CaseFileError) as error:
        load_case_file(path)
    assert [p.format("suite.yaml") for p in error.value.problems] == [
        "suite.yaml:4: case 'none': 'seeds: 0' is not a number of seeds: a whole number from 1 to 10000 runs seeds "
        "0 to N-1 (e.g. seeds: 8); to run particular seeds, list them: [0, 42]",
        "suite.yaml:5: case 'none': 'min_pass_rate' must be a number in (0, 1], such as 0.75 (the share of the "
        "case's seeds whose checks must all pass); got the number 0",
        "suite.yaml:9: case 'many': 'seeds: 10001' is not a number of seeds: a whole number from 1 to 10000 runs "
        "seeds 0 to N-1 (e.g. seeds: 8); to run particular seeds, list them: [0, 42]",
        "suite.yaml:10: case 'many': 'min_pass_rate' must be a number in (0, 1], such as 0.75 (the share of the "
        "case's seeds whose checks must all pass); got the number 1.5",
        "suite.yaml:14: case 'text': 'min_pass_rate' must be a number in (0, 1], such as 0.75 (the share of the "
        "case's seeds whose checks must all pass); got the text '75%'",
    ]


def test_a_rate_gated_case_s_seeds_share_pipeline_calls(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    from test_cache_and_batching import CALL_COUNTER

    pytester.makeconftest(CALL_COUNTER.replace("sorted(set(BATCHES))", "BATCHES"))
    pytester.makefile(".yaml", suite=case_yaml(rate_case(clip_labels, "owl", min_pass_rate=0.5)))
    result = pytester.runpytest("suite.yaml", "-s", "--t2i-no-cache", "--t2i-batch-size=3", *model_args)
    result.assert_outcomes(passed=1)
    # 8 seeds in calls of 3, 3 and 2 images; each call's UNet runs 2 steps on twice its images (guidance).
    result.stdout.fnmatch_lines(["*UNET_BATCHES [[]6, 6, 6, 6, 4, 4[]]"])


def test_compare_and_merge_show_case_rates_worst_first(
    pytester: pytest.Pytester, run_args: list[str], clip_labels: Labels, seed_probs: list[float], capsys: Any
) -> None:
    from harness.__main__ import main

    def run(report_dir: str, falls_to: int) -> None:
        pytester.makefile(
            ".yaml",
            suite=case_yaml(
                rate_case(clip_labels, "steady", min_prob=threshold_for(seed_probs, 6), min_pass_rate=0.5)
                + rate_case(clip_labels, "falls", min_prob=threshold_for(seed_probs, falls_to), min_pass_rate=0.25)
            ),
        )
        pytester.runpytest("suite.yaml", f"--t2i-report-dir={report_dir}", *run_args).assert_outcomes(passed=2)

    run("before", SEEDS)
    pytester.runpytest("suite.yaml", "--t2i-save-baseline=main", "--t2i-report-dir=saved", *run_args)
    run("after", 2)
    page = pytester.path / "compare.html"
    for side_a in ("before", "baselines/main"):
        capsys.readouterr()
        assert main(["compare", str(pytester.path / side_a), str(pytester.path / "after"), "-o", str(page)]) == 0
        out = capsys.readouterr().out
        assert out.endswith(
            "; 2 cases: 1 regressed, 0 improved, 1 unchanged, 0 not comparable, 0 only in A, 0 only in B\n"
        )
        text = page.read_text()
        falls, steady = text.index('data-case-id="falls"'), text.index('data-case-id="steady"')
        assert falls < steady  # worst first
        row = text[falls : text.index("</tr>", falls)]
        assert 'data-case-status="regressed"' in row and "0.0035" in row and "-75.0 pts" in row
        assert "8 of 8 = 100% [67.6%, 100%]" in row and "2 of 8 = 25% [7.1%, 59.1%]" in row
        # The baseline side knows the gate from its cases entries; a run side from its records.
        assert row.count("needs 25%") == 2

    assert (
        main(["merge", str(pytester.path / "before"), str(pytester.path / "after"), "-o", str(pytester.path / "m")])
        == 0
    )
    merged = results(pytester, "m")
    assert sorted((c["case"], c["seeds_passed"]) for c in merged["cases"]) == [("falls", 2), ("steady", 6)]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"seeds_run": 2, "seeds_passed": 3}, "cases.owl.seeds_passed"),
        ({"seeds_run": "8"}, "cases.owl.seeds_run"),
        ({"scores": {"clip": {"prob": {"label": "x", "n": 2, "mean": 0.5, "interval": [0.1]}}}}, "interval"),
        ({"case": "other"}, "cases.owl"),
    ],
)
def test_a_baseline_s_case_entries_are_checked(tmp_path: Path, entry: dict[str, Any], field: str) -> None:
    from harness.reports.baseline import BaselineError, read_baseline_file

    good = {"file": "suite.yaml", "case": "owl", "seeds_run": 8, "seeds_passed": 6, "min_pass_rate": 0.5, "scores": {}}
    path = tmp_path / "suite.yaml.json"
    document = {
        "version": 1,
        "baseline": "main",
        "file": "suite.yaml",
        "items": {},
        "cases": {"owl": {**good, **entry}},
    }
    path.write_text(json.dumps(document))
    with pytest.raises(BaselineError) as error:
        read_baseline_file(path)
    assert field in str(error.value) and "not a readable t2i baseline file" in str(error.value)
    path.write_text(json.dumps({**document, "cases": {"owl": good}}))
    assert read_baseline_file(path).cases["owl"].seeds_passed == 6
