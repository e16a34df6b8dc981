"""Caches and report dirs that cannot be written, links planted in the report dir, and names too long
for the file system: the run goes on, says what happened once, and never loses its report.

The dev and CI machines run as root, for whom chmod makes nothing read-only: a conftest.py makes the
harness's own writes there fail with the errno a read-only or full volume gives.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Labels, case_yaml, passing_case


def records(pytester: pytest.Pytester, report_dir: str = "reports") -> dict[str, dict]:
    document = json.loads((pytester.path / report_dir / "results.json").read_text())
    return {record["id"]: record for record in document["results"]}


WRITES_FAIL_UNDER = """
import errno
import os
from pathlib import Path

import pytest

import harness.common.atomic

FAILING_ROOT = Path({root!r}).resolve()
ERRNO = errno.{errno}
SKIP = {skip!r}
ONLY = {only!r}
_original = harness.common.atomic.atomic_write_bytes


def _failing(path, data, *, root=None):
    path = Path(path)
    chosen = path.name in ONLY if ONLY else path.name not in SKIP
    if Path(os.path.abspath(path)).is_relative_to(FAILING_ROOT) and chosen:
        raise OSError(ERRNO, os.strerror(ERRNO), str(path))
    return _original(path, data, root=root)


import harness.common.atomic
import harness.generation.image_cache
import harness.judging.score_cache
import harness.reports.report_dir

# Patched while this conftest is loaded (from collection to the end of the session, when baselines are
# saved), restored at unconfigure: pytester runs many sessions in one process. harness.common.atomic's own
# name serves atomic_write_text; the other modules imported the function itself.
_MODULES = [
    harness.common.atomic, harness.generation.image_cache, harness.judging.score_cache, harness.reports.report_dir
]
for _module in _MODULES:
    _module.atomic_write_bytes = _failing


def pytest_unconfigure(config):
    for module in _MODULES:
        module.atomic_write_bytes = _original
"""


def failing_writes(
    pytester: pytest.Pytester, root: str, errno: str, skip: tuple[str, ...] = (), only: tuple[str, ...] = ()
) -> None:
    """Writes under ``root`` fail with ``errno``: all but those named in ``skip``, or only those in ``only``."""
    text = WRITES_FAIL_UNDER.format(root=str(pytester.path / root), errno=errno, skip=list(skip), only=list(only))
    pytester.makeconftest(text)


def two_cases(labels: Labels) -> str:
    return case_yaml(
        f"""
        - id: good
          prompt: "{labels.prompt}"
          clip: {labels.passing}
        - id: bad
          prompt: "{labels.prompt}"
          clip: {labels.failing}
        """,
        seeds="[0, 1]",
    )


@pytest.mark.filterwarnings(
    "default::harness.pytest_plugin.scored_images.CacheWriteWarning"
)  # as in a user's run: shown, not raised
@pytest.mark.parametrize("errno", ["EROFS", "ENOSPC"])
def test_an_unwritable_cache_warns_once_and_the_run_goes_on_uncached(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, errno: str
) -> None:
    failing_writes(pytester, "cache", errno)
    pytester.makefile(".yaml", suite=two_cases(clip_labels))
    result = pytester.runpytest("suite.yaml", "--t2i-cache-dir=cache", *model_args)
    # The failing case still fails: nothing passes without its scores.
    result.assert_outcomes(passed=2, failed=2)
    found = records(pytester)
    for record in found.values():
        assert record["clip"] is not None
        assert record["clip"]["passed"] is record["id"].startswith("suite.yaml::good")
    assert not list((pytester.path / "cache").rglob("*.png")) and not list((pytester.path / "cache").rglob("*.f32"))
    output = result.stdout.str()
    reason = os.strerror(getattr(__import__("errno"), errno))
    assert output.count(f"cannot be written ({reason}); the run goes on without storing") == 1  # warned once
    assert "CacheWriteWarning" in output and "Traceback" not in output


def test_a_bad_cache_warning_under_error_filter_fails_one_item_with_one_line(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    failing_writes(pytester, "cache", "EROFS")
    pytester.makefile(".yaml", suite=passing_case(clip_labels, seeds="[0, 1]"))
    result = pytester.runpytest("suite.yaml", "--t2i-cache-dir=cache", "-W", "error::UserWarning", *model_args)
    result.assert_outcomes(passed=1, failed=1)  # the item that carried the warning; the run went on
    result.stdout.fnmatch_lines(["suite.yaml:*: case 'owl', seed 0", "t2i: the cache * cannot be written*"])
    assert "Traceback" not in result.stdout.str()


def test_a_report_dir_that_cannot_be_written_is_a_usage_error_before_any_item_runs(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    (pytester.path / "afile").write_text("")
    pytester.makefile(".yaml", suite=passing_case(clip_labels))
    result = pytester.runpytest("suite.yaml", "--t2i-report-dir=afile/reports", *model_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: the report dir */afile/reports (--t2i-report-dir) cannot be written: Not a directory*"]
    )
    assert "PASSED" not in result.stdout.str() and "passed" not in result.stdout.str()


def test_a_report_dir_that_fills_up_mid_run_is_one_error_and_a_failed_run(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    # The start-up probe succeeds; every later write into reports/ fails as on a full disk.
    failing_writes(pytester, "reports", "ENOSPC", skip=(".t2i-write-check",))
    pytester.makefile(".yaml", suite=passing_case(clip_labels, seeds="[0, 1]"))
    result = pytester.runpytest("suite.yaml", "--t2i-no-cache", *model_args)
    result.assert_outcomes(passed=2)  # the verdicts are complete ...
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # ... but the run is not green
    output = result.stdout.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert output.count("cannot be written: No space left on device") == 1
    result.stdout.fnmatch_lines(["*t2i: report dir not written*"])
    assert not (pytester.path / "reports" / "results.json").exists()


def test_a_report_html_that_cannot_be_written_is_one_error_not_an_internal_error(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    failing_writes(pytester, "reports", "ENOSPC", only=("report.html",))
    (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = --html=reports/report.html --self-contained-html\n")
    pytester.makefile(".yaml", suite=passing_case(clip_labels))
    result = pytester.runpytest("suite.yaml", "--t2i-no-cache", *model_args)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    result.stdout.fnmatch_lines(["*t2i: report dir not written*", "*No space left on device (writing */report.html)*"])
    assert (pytester.path / "reports" / "results.json").is_file()  # what could be written was
    assert not (pytester.path / "reports" / "report.html").exists()


def test_a_symlink_planted_in_the_images_folder_is_replaced_never_followed(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    images = pytester.path / "reports" / "images"
    images.mkdir(parents=True)
    (images / "suite.yaml").symlink_to(outside, target_is_directory=True)  # a folder link
    pytester.makefile(".yaml", suite=passing_case(clip_labels, seeds="[0, 1]"))
    other = pytester.path / "reports" / "images" / "other.yaml"
    pytester.runpytest("suite.yaml", "--t2i-no-cache", *model_args).assert_outcomes(passed=2)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    folder = images / "suite.yaml"
    assert folder.is_dir() and not folder.is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == ["owl-seed0.png", "owl-seed1.png"]
    assert not other.exists()

    # A link at the image's own name is replaced by the image, and its target left alone.
    (folder / "owl-seed0.png").unlink()
    (folder / "owl-seed0.png").symlink_to(outside / "keep.txt")
    pytester.runpytest("suite.yaml", "--t2i-no-cache", *model_args).assert_outcomes(passed=2)
    assert not (folder / "owl-seed0.png").is_symlink()
    assert (folder / "owl-seed0.png").read_bytes().startswith(b"\x89PNG")
    assert (outside / "keep.txt").read_text() == "untouched"


def test_a_case_file_with_a_250_character_name_keeps_its_report_and_baseline(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    stem = "a" * 245  # + ".yaml": 250 characters, as long as the file system allows with room for ".json"
    (pytester.path / f"{stem}.yaml").write_text(passing_case(clip_labels))
    (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = --html=reports/report.html --self-contained-html\n")
    result = pytester.runpytest(f"{stem}.yaml", "--t2i-no-cache", "--t2i-save-baseline=main", *model_args)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert (pytester.path / "reports" / "report.html").is_file()
    (saved,) = (pytester.path / "baselines" / "main").iterdir()
    assert len(saved.name) < 255 and json.loads(saved.read_text())["file"] == f"{stem}.yaml"
    # ... and the baseline is found again by the case file it names.
    again = pytester.runpytest(f"{stem}.yaml", "--t2i-no-cache", "--t2i-baseline=main", *model_args)
    again.stdout.fnmatch_lines(
        [
            "t2i baseline 'main' (tolerance 0.05): 0 regressed, 0 improved, 1 unchanged, 0 new; "
            "cases: * 1 unchanged, 0 new"
        ]
    )


def test_a_baseline_that_cannot_be_saved_leaves_the_report_and_fails_the_run(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    failing_writes(pytester, "baselines", "EROFS")
    (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = --html=reports/report.html --self-contained-html\n")
    pytester.makefile(".yaml", suite=passing_case(clip_labels))
    result = pytester.runpytest("suite.yaml", "--t2i-no-cache", "--t2i-save-baseline=main", *model_args)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["t2i baseline 'main' was not saved: Read-only file system (*main/suite.yaml.json)*"])
    assert "INTERNALERROR" not in result.stdout.str()
    assert (pytester.path / "reports" / "report.html").is_file()
    assert (pytester.path / "reports" / "results.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--t2i-save-baseline=" + "b" * 300],
            "ERROR: --t2i-save-baseline is 300 characters long; a baseline name names a folder under baselines/, "
            "so keep it to 100 (e.g. 'main' or 'sd15-euler').",
        ),
        (
            ["--t2i-save-baseline=main"],
            "ERROR: --t2i-save-baseline='main': */baselines is a file, but baselines are kept in a folder of that "
            "name. Move or rename the file.",
        ),
        (
            ["--t2i-baseline=main"],
            "ERROR: --t2i-baseline='main': */baselines is a file, but baselines are kept in a folder of that "
            "name. Move or rename the file.",
        ),
    ],
)
def test_baseline_folders_that_cannot_be_used_are_usage_errors_at_start_up(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, args: list[str], message: str
) -> None:
    (pytester.path / "baselines").write_text("not a folder")
    pytester.makefile(".yaml", suite=passing_case(clip_labels))
    result = pytester.runpytest("suite.yaml", *args, *model_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not (pytester.path / "reports").exists()  # before anything ran
