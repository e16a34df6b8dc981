"""Human verdicts (baselines/reviewed-labels.json) in later runs: shown next to the judge's in results.json and
report.html, counted in the summary's agreement table, and with --t2i-human-verdicts override deciding pass/fail."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from conftest import Labels, case_yaml
from harness.common.json_input import ShapeError
from harness.common.rate_statistics import percent, wilson_interval
from harness.judging.judge import Verdict
from harness.reports.human_verdicts import HumanNote, decided_passed, human_agreement, notes_for
from harness.reports.records import parse_record
from harness.reports.report_rows import human_line
from harness.reports.reviewed_labels import HumanLabel, by_image, labels_path, record_labels

REVIEWER = "Ann <ann@example.com>"  # as harness.reports.reviewed_labels.reviewer() writes it: escaped on the page
AT = "2026-12-01T17:00:00Z"


def suite(labels: Labels) -> str:
    """Five cases of the calibration prompt (one image, cached once): CLIP passes `owl`, `gated` (both seeds) and
    `other`, and fails `bad` and `flipped`."""
    prompt = labels.prompt
    return case_yaml(
        f"""
        - id: owl
          prompt: "{prompt}"
          clip: {labels.passing}
        - id: bad
          prompt: "{prompt}"
          clip: {labels.failing}
        - id: flipped
          prompt: "{prompt}"
          clip: {labels.failing}
        - id: other
          prompt: "{prompt}"
          clip: {labels.passing}
        - id: gated
          prompt: "{prompt}"
          seeds: [0, 1]
          min_pass_rate: 1.0
          clip: {labels.passing}
        """
    )


def results(pytester: pytest.Pytester) -> dict[tuple[str, int], dict[str, Any]]:
    document = json.loads((pytester.path / "reports/results.json").read_text())
    return {(record["case"], record["seed"]): record for record in document["results"]}


def label(record: dict[str, Any], verdict: str, decision: str, cache_key: str | None = None) -> HumanLabel:
    judge_verdict = "pass" if record["clip"]["passed"] else "fail"
    return HumanLabel(
        file=record["file"],
        case=record["case"],
        seed=record["seed"],
        judge="clip",
        cache_key=cache_key or record["cache_key"],
        verdict=verdict,
        judge_verdict=judge_verdict,
        decision=decision,
        by=REVIEWER,
        at=AT,
    )


def report_cells(page: str) -> dict[str, str]:
    """Each report row's harness cells (the JSON pytest-html embeds), by node id."""
    blob = re.search(r'data-jsonblob="([^"]*)"', page)
    assert blob is not None
    tests = json.loads(unescape(blob.group(1)))["tests"]
    return {test_id: "".join(rows[-1]["resultsTableRow"]) for test_id, rows in tests.items()}


def test_human_verdicts_are_shown_counted_and_can_override(
    pytester: pytest.Pytester, run_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(".yaml", suite=suite(clip_labels))
    html_args = ["--html=reports/report.html", "--self-contained-html"]
    first = pytester.runpytest("suite.yaml", *html_args, *run_args)
    first.assert_outcomes(passed=3, failed=2)
    before = results(pytester)
    # No labels file: nothing shown.
    assert all(record["human"] is None for record in before.values())
    page = (pytester.path / "reports/report.html").read_text()
    assert 'class="t2i-human' not in page and "t2i-human-agreement" not in page

    # What the review page would write: the person says the judge is wrong on `owl` (passed, should fail) and on
    # `flipped` (failed, should pass), confirms `bad` and says seed 1 of `gated` should fail; a label for
    # another image of `other` (another cache key) belongs to other pixels.
    record_labels(
        labels_path(pytester.path),
        [
            label(before[("owl", 0)], "fail", "judge_wrong"),
            label(before[("bad", 0)], "fail", "accept"),
            label(before[("flipped", 0)], "pass", "judge_wrong"),
            label(before[("other", 0)], "fail", "judge_wrong", cache_key="0" * 64),
            label(before[("gated", 1)], "fail", "judge_wrong"),
        ],
    )

    shown = pytester.runpytest("suite.yaml", *html_args, *run_args)
    shown.assert_outcomes(passed=3, failed=2)  # shown, not applied: the judges decide as before
    after = results(pytester)
    assert after[("owl", 0)]["human"] == {
        "clip": {
            "verdict": "fail",
            "judge_verdict": "pass",
            "decision": "judge_wrong",
            "by": REVIEWER,
            "at": AT,
            "agrees": False,
            "overrides": False,
        }
    }
    assert after[("bad", 0)]["human"]["clip"]["agrees"] is True
    assert after[("flipped", 0)]["human"]["clip"]["agrees"] is False
    assert after[("other", 0)]["human"] is None and after[("gated", 0)]["human"] is None
    assert after[("gated", 1)]["human"]["clip"]["agrees"] is False
    assert after[("owl", 0)]["outcome"] == "passed" and after[("owl", 0)]["clip"]["passed"] is True
    shown.stdout.fnmatch_lines(["t2i human verdicts (reviewed-labels.json): CLIP agreed on 1 of 4"])

    page = (pytester.path / "reports/report.html").read_text()
    cells = report_cells(page)
    owl = cells["suite.yaml::owl[seed=0]"]
    assert (
        '<div class="t2i-human t2i-human-disagrees" data-human="fail" data-judge="clip">human: fail (judge is wrong) '
        "- by Ann &lt;ann@example.com&gt; at 2026-12-01T17:00:00Z; disagrees with the judge (shown, not applied)"
        "</div>"
    ) in owl
    assert "<ann@" not in page
    assert "t2i-human-agrees" in cells["suite.yaml::bad[seed=0]"]
    assert 'class="t2i-human' not in cells["suite.yaml::other[seed=0]"]
    assert 'data-reviewed="1" data-agreed="0">human verdicts on 1 of 2 seeds' in cells["suite.yaml::gated"]
    row = re.search(r'<table id="t2i-human-agreement">.*?<tr data-key="clip">(.*?)</tr>', page, re.S)
    assert row is not None
    low, high = wilson_interval(1, 4)
    assert [unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))] == [
        "CLIP",
        "4",
        "1",
        "25%",
        f"{percent(low)}-{percent(high)}",
        "0",
    ]
    assert "Agreement with human verdicts" in page

    overridden = pytester.runpytest("suite.yaml", "--t2i-human-verdicts=override", *run_args)
    # owl now fails and flipped passes; gated fails its gate, its seed 1 counted as the human decided.
    overridden.assert_outcomes(passed=2, failed=3)
    overridden.stdout.fnmatch_lines(
        [
            "suite.yaml:*: case 'owl', seed 0",
            "the human verdict overrides CLIP (--t2i-human-verdicts override): the judge says pass, "
            "Ann <ann@example.com> says fail (judge is wrong, reviewed at 2026-12-01T17:00:00Z)",
            "CLIP picked the intended label (*",  # the judge's own score and table still appear
        ]
    )
    overridden.stdout.fnmatch_lines(["  seed 1  fail: the human verdict overrides CLIP *"])
    overridden.stdout.fnmatch_lines(["*; 3 judge verdict(s) decided by the human verdict"])
    final = results(pytester)
    owl_record = final[("owl", 0)]
    assert owl_record["outcome"] == "failed" and owl_record["clip"]["passed"] is True  # the judge's, kept
    # The judge's own probabilities, not the human's: the same as the first run up to float rounding (this run
    # reads the image features from the score cache and recomputes the text side, whose last digits depend on
    # the thread count and batch size), far below the 0.1+ a changed verdict would need.
    assert owl_record["clip"]["probs"] == pytest.approx(before[("owl", 0)]["clip"]["probs"], abs=1e-5)
    assert owl_record["human"]["clip"]["overrides"] is True
    assert final[("flipped", 0)]["outcome"] == "passed" and final[("flipped", 0)]["clip"]["passed"] is False
    assert final[("bad", 0)]["outcome"] == "failed" and final[("bad", 0)]["human"]["clip"]["overrides"] is False
    assert final[("other", 0)]["outcome"] == "passed"
    assert [final[("gated", seed)]["outcome"] for seed in (0, 1)] == ["passed", "failed"]
    document = json.loads((pytester.path / "reports/results.json").read_text())
    gated = next(entry for entry in document["cases"] if entry["case"] == "gated")
    assert (gated["seeds_run"], gated["seeds_passed"], gated["passed"]) == (2, 1, False)


@pytest.mark.parametrize(
    ("args", "ini", "labels", "message"),
    [
        ([], "", '{"version": 1, "labels": [{"file": "suite.yaml"}]}', "*reviewed-labels.json: not a readable *"),
        ([], "", "{not json", "*reviewed-labels.json:1: not a readable reviewed-labels file: not valid JSON*"),
        (
            ["--t2i-human-verdicts=always"],
            "",
            None,
            "--t2i-human-verdicts='always' is not a human-verdicts mode: use show *",
        ),
        ([], "t2i_human_verdicts = maybe", None, "--t2i-human-verdicts (ini option t2i_human_verdicts)='maybe' *"),
    ],
)
def test_bad_labels_file_or_option_is_one_usage_error(
    pytester: pytest.Pytester,
    model_args: list[str],
    clip_labels: Labels,
    args: list[str],
    ini: str,
    labels: str | None,
    message: str,
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makefile(".yaml", suite=case_yaml(f'- id: owl\n  prompt: "x"\n  clip: {clip_labels.passing}\n'))
    if labels is not None:
        path = labels_path(pytester.path)
        path.parent.mkdir()
        path.write_text(labels)
    result = pytester.runpytest("suite.yaml", *model_args, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str() and not (pytester.path / "reports/results.json").exists()
    if labels is not None:
        assert str(labels_path(pytester.path)) in result.stderr.str()  # names the file, and says how to fix it


def test_a_broken_labels_file_does_not_stop_a_run_without_cases(pytester: pytest.Pytester) -> None:
    path = labels_path(pytester.path)
    path.parent.mkdir()
    path.write_text("{not json")
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    pytester.runpytest("test_plain.py").assert_outcomes(passed=1)


# -- units ------------------------------------------------------------------------------------


def verdict(passed: bool) -> Verdict:
    return Verdict("CLIP", passed, explanation="table")


def human_label(verdict: str, cache_key: str = "k1") -> HumanLabel:
    return HumanLabel("a.yaml", "owl", 0, "clip", cache_key, verdict, "pass", "judge_wrong", "Ann", AT)


def test_notes_compare_the_human_verdict_with_this_runs_judge() -> None:
    image = by_image([human_label("fail")])[("a.yaml", "owl", 0, "k1")]
    (shown,) = notes_for(image, {"clip": verdict(True)}, override=False).values()
    assert (shown.agrees, shown.overrides) == (False, False)
    assert decided_passed("clip", verdict(True), {"clip": shown}) is True  # shown only
    (applied,) = notes_for(image, {"clip": verdict(True)}, override=True).values()
    assert applied.overrides is True and decided_passed("clip", verdict(True), {"clip": applied}) is False
    # The judge now agrees with the human (another model, same pixels): nothing to override.
    (agreeing,) = notes_for(image, {"clip": verdict(False)}, override=True).values()
    assert (agreeing.agrees, agreeing.overrides) == (True, False)
    # No verdict of that judge in this run (not scored): no note, so nothing can stand in for a score.
    assert notes_for(image, {"resnet": verdict(True)}, override=True) == {}
    assert notes_for(None, {"clip": verdict(True)}, override=True) == {}


def test_a_label_given_on_another_check_of_the_same_image_is_not_applied() -> None:
    from dataclasses import replace

    from harness.judging.formats import comparison_digest

    checked = Verdict("CLIP", True, explanation="table", comparable="labels: an owl | a hawk")
    same = replace(human_label("fail"), check=comparison_digest("labels: an owl | a hawk"))
    edited = replace(human_label("fail"), check=comparison_digest("labels: an owl | a falcon"))
    assert list(notes_for({"clip": same}, {"clip": checked}, override=True)) == ["clip"]
    assert notes_for({"clip": edited}, {"clip": checked}, override=True) == {}
    # Labels written without a check digest (a judge without a comparison key) apply to the image as before.
    assert list(notes_for({"clip": human_label("fail")}, {"clip": checked}, override=True)) == ["clip"]


def record_json(**extra: Any) -> dict[str, Any]:
    base = {
        "id": "a.yaml::owl[seed=0]",
        "case": "owl",
        "file": "a.yaml",
        "line": 2,
        "seed": 0,
        "prompt": "an owl",
        "negative_prompt": None,
        "steps": 2,
        "guidance_scale": 7.5,
        "width": None,
        "height": None,
        "tags": [],
        "outcome": "passed",
        "clip": {
            "labels": ["an owl", "a hawk"],
            "probs": [0.7, 0.3],
            "expect": "an owl",
            "min_prob": None,
            "margin": 0.4,
            "passed": True,
        },
    }
    return {**base, **extra}


def test_records_read_the_human_field_back_and_refuse_a_wrong_one() -> None:
    assert parse_record(record_json()).human is None  # results.json written before human verdicts
    assert parse_record(record_json(human=None)).human is None
    note = HumanNote("fail", "pass", "judge_wrong", "<b>Ann</b>", AT, agrees=False, overrides=True)
    record = parse_record(record_json(human={"clip": note.to_json()}))
    assert record.human == {"clip": note}
    assert str(human_line(record, "clip")).startswith(
        '<div class="t2i-human t2i-human-overrides" data-human="fail" data-judge="clip">human: fail (judge is wrong) '
        "- by &lt;b&gt;Ann&lt;/b&gt; at"
    )
    with pytest.raises(ShapeError, match=r"field 'human\.clip\.verdict': expected 'pass' or 'fail', got 'maybe'"):
        parse_record(record_json(human={"clip": {**note.to_json(), "verdict": "maybe"}}))
    with pytest.raises(ShapeError, match=r"field 'human\.clip\.agrees'"):
        parse_record(record_json(human={"clip": {k: v for k, v in note.to_json().items() if k != "agrees"}}))
    with pytest.raises(ShapeError, match=r"^field 'human\.Bad'"):
        parse_record(record_json(human={"Bad": note.to_json()}))
    with pytest.raises(ShapeError, match=r"^field 'human': expected an object"):
        parse_record(record_json(human=[1]))


def test_agreement_recomputes_from_verdicts_not_the_records_claim(tmp_path: Path) -> None:
    wrong_claim = HumanNote("fail", "fail", "accept", "Ann", AT, agrees=True)  # yet the judge passed
    agreeing = HumanNote("pass", "pass", "accept", "Ann", AT, agrees=True)
    records = [
        parse_record(record_json(human={"clip": wrong_claim.to_json()})),
        parse_record(record_json(id="a.yaml::owl[seed=1]", seed=1, human={"clip": agreeing.to_json()})),
        parse_record(record_json(id="a.yaml::owl[seed=2]", seed=2)),
        # A note beside no verdict of its judge (a hand-edited file) is not counted.
        parse_record(record_json(id="a.yaml::owl[seed=3]", seed=3, human={"resnet": agreeing.to_json()})),
    ]
    ((found),) = human_agreement(records)
    assert (found.section, found.title, found.reviewed, found.agreed, found.overridden) == ("clip", "CLIP", 2, 1, 0)
