"""Plugins and options users combine with the harness: pytest-rerunfailures, pytest-timeout, --collect-only, -k."""

from __future__ import annotations

import json

import pytest

from conftest import Labels, case_yaml, passing_case


def results(pytester: pytest.Pytester) -> list[dict]:
    return json.loads((pytester.path / "reports" / "results.json").read_text())["results"]


HTML_INI = "[pytest]\naddopts = --html=reports/report.html --self-contained-html\n"


def test_a_rerun_replaces_its_items_record(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytest.importorskip("pytest_rerunfailures")
    (pytester.path / "pytest.ini").write_text(HTML_INI)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: good
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            - id: bad
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.failing}
            """,
            seeds="[0, 1]",
        ),
    )
    result = pytester.runpytest("suite.yaml", "--t2i-no-cache", "--reruns=1", *model_args)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*2 failed, 2 passed, 2 rerun in *"])
    found = results(pytester)
    assert sorted(record["id"] for record in found) == sorted(
        f"suite.yaml::{case}[seed={seed}]" for case in ("good", "bad") for seed in (0, 1)
    )
    assert {record["id"]: record["outcome"] for record in found if "bad" in record["id"]} == {
        "suite.yaml::bad[seed=0]": "failed",
        "suite.yaml::bad[seed=1]": "failed",
    }
    html = (pytester.path / "reports" / "report.html").read_text()
    assert 'data-passed="2" data-run="4" data-total="4"' in html  # the summary counts items, not attempts
    assert html.count('<a class="t2i-') == 4  # one image per item in the grid


SLOW_BATCHES = """
import time

import pytest

CALLS = []


@pytest.fixture(scope="session")
def t2i_pipeline(t2i_pipeline):
    original = t2i_pipeline.__class__.__call__

    class TimedPipeline(t2i_pipeline.__class__):
        def __call__(self, *args, **kwargs):
            CALLS.append(len(kwargs["prompt"]))
            if len(kwargs["prompt"]) > 1:
                time.sleep(60)  # a batch far slower than the items' time limit
            return original(self, *args, **kwargs)

    t2i_pipeline.__class__ = TimedPipeline
    return t2i_pipeline


def pytest_unconfigure(config):
    print("PIPELINE_CALLS", CALLS)
"""


def test_a_timeout_fails_the_item_that_ran_out_of_time_and_the_rest_run_alone(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytest.importorskip("pytest_timeout")
    pytester.makeconftest(SLOW_BATCHES)
    pytester.makefile(".yaml", suite=passing_case(clip_labels, seeds="[0, 1, 2, 3]"))
    # The limit covers the test call (models load at setup): a loaded CI machine takes seconds to load them.
    result = pytester.runpytest(
        "suite.yaml",
        "-s",
        "--t2i-no-cache",
        "--t2i-batch-size=4",
        "--timeout=3",  # a single tiny image takes 0.2 s; the batch sleeps far longer
        "-o",
        "timeout_func_only=true",
        *model_args,
    )
    result.assert_outcomes(passed=3, failed=1)
    # The first item's batch of 4 was cut short; every other image was made once, alone.
    result.stdout.fnmatch_lines(["PIPELINE_CALLS [[]4, 1, 1, 1[]]"])
    result.stdout.fnmatch_lines(
        [
            "suite.yaml:*: case 'owl', seed 0",
            "Timeout (>3.0s) from pytest-timeout. (interrupted at conftest.py:* in __call__)",
        ]
    )
    failures = result.stdout.str().split("= FAILURES =")[1].split("short test summary")[0]
    assert len(failures.splitlines()) < 10 and "tensor(" not in failures  # one message, not 600 lines
    assert {record["outcome"] for record in results(pytester) if record["seed"] != 0} == {"passed"}


def test_collect_only_leaves_the_last_report_alone(pytester: pytest.Pytester, clip_labels: Labels) -> None:
    (pytester.path / "pytest.ini").write_text(HTML_INI)
    report = pytester.path / "reports" / "report.html"
    report.parent.mkdir()
    report.write_text("the last real run's report")
    pytester.makefile(".yaml", suite=passing_case(clip_labels))
    result = pytester.runpytest("suite.yaml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["suite.yaml::owl[[]seed=0[]]"])
    assert report.read_text() == "the last real run's report"
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]


def test_k_selects_one_seed_exactly(pytester: pytest.Pytester, clip_labels: Labels) -> None:
    pytester.makefile(".yaml", suite=passing_case(clip_labels, seeds="[1, 10, 11, 21]"))
    result = pytester.runpytest("suite.yaml", "--collect-only", "-q", "-k", "owl and [seed1]")
    assert result.ret == pytest.ExitCode.OK
    selected = [line for line in result.stdout.lines if line.startswith("suite.yaml::")]
    assert selected == ["suite.yaml::owl[seed=1]"]  # not seed 10, 11 or 21
    result = pytester.runpytest("suite.yaml", "--collect-only", "-q", "-k", "not [seed1] and not [seed21]")
    assert [line for line in result.stdout.lines if line.startswith("suite.yaml::")] == [
        "suite.yaml::owl[seed=10]",
        "suite.yaml::owl[seed=11]",
    ]


FIRST_LOAD_INTERRUPTED = """
import pytest

import harness.common.model_loading

_load = harness.common.model_loading.load_pipeline
LOADS = []


def first_load_times_out(settings, *args, **kwargs):
    LOADS.append(1)
    if len(LOADS) == 1:
        # What pytest-timeout's signal handler does when an item's time runs out (here during the
        # load, e.g. from a cold network disk), without depending on how fast this machine is.
        pytest.fail("Timeout (>6.0s) from pytest-timeout.")
    return _load(settings, *args, **kwargs)


harness.common.model_loading.load_pipeline = first_load_times_out


def pytest_unconfigure(config):
    harness.common.model_loading.load_pipeline = _load
"""


def test_a_timeout_while_loading_a_model_fails_that_item_only(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makeconftest(FIRST_LOAD_INTERRUPTED)
    pytester.makefile(".yaml", suite=passing_case(clip_labels, seeds="[0, 1, 2]"))
    result = pytester.runpytest("suite.yaml", "--t2i-no-cache", "--t2i-batch-size=1", *model_args)
    # pytest keeps a session fixture's setup error for every later item; an interrupted load is not kept.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*Timeout (>6.0s) from pytest-timeout.*"])
