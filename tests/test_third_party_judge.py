"""A judge added from outside the harness (tests/t2i_brightness, through the public hook only) runs end to end:
its verdict fails items; its scores are in results.json, the report, a saved baseline, a baseline comparison
and the compare page; the score cache spares its model; check mode reports its section's problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import t2i_brightness
from conftest import Labels, case_yaml
from harness.__main__ import main

# This module imports the plugin too (to read its counter), so pytest cannot rewrite its asserts: it has none.
JUDGE = ("-p", "t2i_brightness", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def _suite(labels: Labels, *, extra: str = "") -> str:
    return case_yaml(
        f"""
        - id: lit
          prompt: "{labels.prompt}"
          clip: {labels.passing}
          brightness: {{low: 0.0, high: 1.0}}
        - id: glare
          prompt: "{labels.prompt}"
          clip: {labels.passing}
          brightness: {{low: 0.999, high: 1.0}}
        - id: plain
          prompt: "{labels.prompt}"
          clip: {labels.passing}
        {extra}""",
        seeds="[0, 1]",
    )


def _records(run: Path) -> dict[str, dict[str, Any]]:
    document = json.loads((run / "results.json").read_text())
    return {r["id"].split("::")[1]: r for r in document["results"]}


def test_a_judge_from_a_plugin_fails_items_and_its_scores_reach_every_output(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=_suite(clip_labels))
    run = pytester.runpytest(
        *JUDGE, "suite.yaml", "--html=reports/report.html", "--t2i-save-baseline=main", "-p", "no:randomly", *model_args
    )
    # Its verdict decides: glare's images are never that bright, CLIP passes every item.
    run.assert_outcomes(passed=4, failed=2)
    run.stdout.fnmatch_lines(["suite.yaml:*: case 'glare', seed 0", "CLIP picked the intended label*"])
    run.stdout.fnmatch_lines(["mean brightness 0.* is outside [[]0.999, 1[]]"])

    records = _records(pytester.path / "reports")
    lit, glare, plain = records["lit[seed=0]"], records["glare[seed=1]"], records["plain[seed=0]"]
    assert plain["brightness"] is None and plain["outcome"] == "passed"
    assert glare["outcome"] == "failed" and glare["brightness"]["passed"] is False
    section = lit["brightness"]
    assert section["passed"] is True and section["title"] == "Brightness"
    scores = {s["name"]: s for s in section["scores"]}
    assert set(scores) == {"mean", "contrast"} and 0 < scores["mean"]["value"] < 1
    assert scores["contrast"]["gated"] is True and scores["mean"]["better"] == "neither"
    assert section["details"] == {"low": 0.0, "high": 1.0}
    assert "brightness_s" in lit["timings"]
    mean = scores["mean"]["value"]

    html = (pytester.path / "reports/report.html").read_text()
    assert "&lt;th&gt;Brightness&lt;/th&gt;" in html or "<th>Brightness</th>" in html  # its column
    assert f"{mean:.4f}" in html and "range: 0 to 1" in html  # its cell

    entry = json.loads((pytester.path / "baselines/main/suite.yaml.json").read_text())["items"]["lit[seed=0]"]
    saved = {s["name"]: s["value"] for s in entry["brightness"]["scores"]}
    assert saved == {"mean": round(mean, 4), "contrast": round(scores["contrast"]["value"], 4)}
    assert entry["clip"]["labels"] == lit["clip"]["labels"]  # the built-in's format, beside it

    # A baseline in which lit's images had far more contrast: a regression of the judge's gated score.
    path = pytester.path / "baselines/main/suite.yaml.json"
    document = json.loads(path.read_text())
    for score in document["items"]["lit[seed=0]"]["brightness"]["scores"]:
        if score["name"] == "contrast":
            score["value"] += 0.2
    path.write_text(json.dumps(document))
    compared = pytester.runpytest(*JUDGE, "suite.yaml", "--t2i-baseline=main", "--t2i-report-dir=run-b", *model_args)
    compared.assert_outcomes(passed=3, failed=3)
    compared.stdout.fnmatch_lines(
        [
            "suite.yaml:*: case 'lit', seed 0",
            "baseline 'main': contrast dropped by more than the tolerance 0.05:",
            "*",
            "  CLIP probability *",
            "  CLIP margin *",
            "  CLIP verdict *pass     pass",
            "  Brightness mean *",
            "  Brightness contrast    * -0.2000  <- dropped more than 0.05",
            "  Brightness verdict     * pass     pass",
        ]
    )
    drift = _records(pytester.path / "run-b")["lit[seed=0]"]["baseline"]
    assert drift["status"] == "regressed"
    assert drift["deltas"]["brightness"]["contrast"] == pytest.approx(-0.2, abs=1e-4)

    # The compare page, from the two results.json files alone (no plugin loaded in the command).
    out = pytester.path / "compare.html"
    assert main(["compare", str(pytester.path / "reports"), str(pytester.path / "run-b"), "-o", str(out)]) == 0
    page = out.read_text()
    assert "<th>Brightness A</th><th>Brightness B</th>" in page
    assert 'data-name="brightness.contrast"' in page and 'id="total-mean-brightness-contrast"' in page
    assert '<table class="t2i-brightness">' in page


def test_the_score_cache_spares_the_judge_and_editing_its_check_reruns_nothing(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=_suite(clip_labels))
    cache = ["--t2i-cache-dir=cache"]
    t2i_brightness.MEASURED.clear()
    pytester.runpytest(*JUDGE, "suite.yaml", *cache, *model_args).assert_outcomes(passed=4, failed=2)
    assert sum(t2i_brightness.MEASURED) == 4  # lit and glare, two seeds each; plain declares no brightness
    t2i_brightness.MEASURED.clear()
    # glare's range widened: the same images, the same meter; only the verdict is formed again.
    pytester.makefile(".yaml", suite=_suite(clip_labels).replace("low: 0.999", "low: 0.0"))
    pytester.runpytest(*JUDGE, "suite.yaml", *cache, *model_args).assert_outcomes(passed=6)
    assert t2i_brightness.MEASURED == []


def test_its_section_is_validated_like_any_other_in_both_modes(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(
        ".yaml",
        suite=_suite(
            clip_labels,
            extra=f"""- id: dim
          prompt: "{clip_labels.prompt}"
          clip: {clip_labels.passing}
          brightness: {{low: 0.8, hight: 0.9}}
        """,
        ),
    )
    # Check mode exits 1 on a broken file, as on any collection error; a run stops before its first item (2).
    for mode, status in ((["--t2i-check"], pytest.ExitCode.TESTS_FAILED), (model_args, pytest.ExitCode.INTERRUPTED)):
        result = pytester.runpytest(*JUDGE, "suite.yaml", *mode)
        assert result.ret == status
        result.stdout.fnmatch_lines(
            [
                "suite.yaml: 2 problems in this case file:",
                "  suite.yaml:20: case 'dim': unknown key 'hight' in 'brightness' (did you mean 'high'?); "
                "allowed keys: low, high",
                "  suite.yaml:20: case 'dim': missing 'brightness.high': a mean brightness between 0 and 1",
            ]
        )
    # Without the plugin, the section is an unknown key: never silently ignored.
    result = pytester.runpytest("suite.yaml", "--t2i-check")
    result.stdout.fnmatch_lines(["*case 'lit': unknown key 'brightness' in a case; allowed keys: *"])


def test_a_section_claimed_by_two_judges_is_one_usage_error(pytester: pytest.Pytester, clip_labels: Labels) -> None:
    pytester.makeconftest(
        """
        import pytest
        from harness.judging.clip import ClipJudge

        class Impostor(ClipJudge):
            pass

        @pytest.hookimpl
        def pytest_t2i_judges(config):
            return [Impostor()]
        """
    )
    pytester.makefile(".yaml", suite=_suite(clip_labels))
    result = pytester.runpytest(*JUDGE, "suite.yaml", "--t2i-check")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the file's collection error: none of its cases is lost
    result.stdout.fnmatch_lines(
        [
            "suite.yaml: two judges claim the case-file section 'clip': conftest.Impostor and "
            "harness.judging.clip.ClipJudge. Rename one judge's `section`."
        ]
    )
    assert "Traceback" not in result.stdout.str()
