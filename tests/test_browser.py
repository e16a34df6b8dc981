"""report.html and compare.html as people see them: opened in headless Chromium, checked, screenshotted.

Needs Debian's chromium and Playwright's Python package (`.ci/install-browser` installs both); without
them the tests skip and say which is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_compare import _two_runs

from conftest import Labels, case_yaml
from harness.__main__ import main

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("T2I_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = "run .ci/install-browser (apt-get install chromium; pip install playwright)"
# Markup in user strings: if any of it rendered, a .t2i-xss element or window.__t2i_xss would exist.
XSS_PROMPT = "an owl <b class='t2i-xss'>bold</b> <img src=x onerror='window.__t2i_xss=1'> & co"
XSS_LABEL = "<i class='t2i-xss'>a lighthouse</i>"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: {INSTALL_HINT}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"the playwright Python package is not installed: {INSTALL_HINT}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open(chromium: Any, page_path: Path) -> Any:
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_function("() => Array.from(document.images).every(img => img.complete)")
    return page


def _image_widths(page: Any, selector: str = "img") -> list[int]:
    """naturalWidth of every image, except pytest-html's empty placeholders for media extras (none here)."""
    return page.eval_on_selector_all(
        selector,
        "els => els.filter(el => !(el.getAttribute('src') === '' && el.closest('.media'))).map(el => el.naturalWidth)",
    )


def _assert_user_strings_are_text(page: Any) -> None:
    assert page.query_selector(".t2i-xss") is None
    assert page.evaluate("() => window.__t2i_xss") is None
    text = page.inner_text("body")
    assert XSS_PROMPT in text and XSS_LABEL in text


def _table(page: Any, selector: str) -> dict[str, list[str]]:
    rows = page.eval_on_selector_all(
        f"{selector} > tbody > tr",
        "rows => rows.map(r => [r.dataset.key, ...Array.from(r.cells).map(c => c.textContent)])",
    )
    return {row[0]: row[1:] for row in rows}


def _expected(records: list[dict[str, Any]]) -> list[str]:
    """Passed, run, pass rate, failed, xfailed, skipped, as the summary should show them."""
    outcomes = [r["outcome"] for r in records]
    passed, skipped, xfailed = outcomes.count("passed"), outcomes.count("skipped"), outcomes.count("xfailed")
    run = len(outcomes) - skipped
    failed = run - passed - xfailed
    rate = f"{100 * passed / run:.0f}%" if run else "-"
    return [str(passed), str(run), rate, str(failed), str(xfailed), str(skipped)]


def test_report_html_in_chromium(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, chromium: Any, tmp_path: Path
) -> None:
    good = f"clip: {clip_labels.passing}"
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            f"""
            - id: good
              prompt: "{clip_labels.prompt}"
              {good}
              tags: [animals, birds]
            - id: bad
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.failing}
              tags: [animals]
            - id: markup
              prompt: "{XSS_PROMPT}"
              clip: {{expect: "{clip_labels.winner}", distractors: ["{clip_labels.loser}", "{XSS_LABEL}"]}}
            - id: later
              prompt: "{clip_labels.prompt}"
              {good}
              skip: "not yet"
            """,
            seeds="[0, 1]",
        ),
    )
    pytester.mkdir("more")
    pytester.path.joinpath("more/other.yaml").write_text(
        case_yaml(f'- id: other\n  prompt: "{clip_labels.prompt}"\n  {good}\n  tags: [birds]\n')
    )
    pytester.makeini("[pytest]\nmarkers =\n    animals: a\n    birds: b\n")
    result = pytester.runpytest(
        "suite.yaml", "more/other.yaml", "--html=reports/report.html", "--self-contained-html", *model_args
    )
    records = json.loads((pytester.path / "reports/results.json").read_text())["results"]
    assert len(records) == 9
    result.assert_outcomes(passed=5, failed=2, skipped=2)

    page = _open(chromium, pytester.path / "reports/report.html")
    page.wait_for_function("() => document.querySelectorAll('#results-table tbody.results-table-row').length === 9")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    with_image = [r for r in records if r["image"]]
    assert len(with_image) == 7  # all but the skipped ones
    widths = _image_widths(page)
    assert len(widths) == 2 * len(with_image)  # the grid's and the table's
    assert all(0 < w <= 256 for w in widths)  # every image loads; thumbnails stay small
    assert page.eval_on_selector_all("#t2i-summary img", "els => els.every(el => el.src.startsWith('data:image/jpeg'))")
    assert len(_image_widths(page, "#t2i-grid img")) == len(_image_widths(page, "#results-table img"))

    totals = page.eval_on_selector("#t2i-totals", "el => ({...el.dataset})")
    expected_totals = _expected(records)
    assert [totals["passed"], totals["run"], totals["total"]] == [*expected_totals[:2], str(len(records))]
    by_file = _table(page, "#t2i-by-file")
    assert by_file == {
        file: [file, *_expected([r for r in records if r["file"] == file])]
        for file in ("more/other.yaml", "suite.yaml")
    }
    assert _table(page, "#t2i-by-tag") == {
        tag: [tag, *_expected([r for r in records if tag in r["tags"]])] for tag in ("animals", "birds")
    }
    by_case = _table(page, "#t2i-by-case")
    assert len(by_case) == 5
    for key, cells in by_case.items():
        file, _, case = key.partition("::")
        seeds = [r for r in records if r["file"] == file and r["case"] == case]
        assert cells[:5] == [file, case, *_expected(seeds)[:3]]
    grid = page.eval_on_selector_all("#t2i-grid a", "els => els.map(el => el.className)")
    group = {"passed": "passed", "failed": "failed", "skipped": "skipped", "xfailed": "xfailed"}
    assert sorted(grid) == sorted(f"t2i-{group[r['outcome']]}" for r in records)

    _assert_user_strings_are_text(page)
    page.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_compare_html_in_chromium(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, chromium: Any, tmp_path: Path
) -> None:
    run_a, run_b = _two_runs(pytester, model_args, clip_labels, prompt=XSS_PROMPT, label=XSS_LABEL)
    out = pytester.path / "compare.html"
    assert main(["compare", str(run_a), str(run_b), "-o", str(out)]) == 0

    page = _open(chromium, out)
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    widths = _image_widths(page)
    assert len(widths) == 12 and all(w > 0 for w in widths)

    sides = [json.loads((run / "results.json").read_text())["results"] for run in (run_a, run_b)]
    cells = page.eval_on_selector_all(
        "#totals > tbody > tr", "rows => rows.map(r => [r.id, ...Array.from(r.cells).map(c => c.textContent)])"
    )
    totals = {row[0]: row[2:4] for row in cells}
    assert totals["total-items"] == [str(len(side)) for side in sides]
    assert totals["total-passed"] == [str(sum(r["clip"]["passed"] for r in side)) for side in sides]
    assert totals["total-mean-prob"] == [
        f"{sum(r['clip']['probs'][0] for r in side) / len(side):.4f}" for side in sides
    ]
    shown = page.eval_on_selector_all("#items > tbody > tr", "rows => rows.map(r => r.dataset.status)")
    counts = page.eval_on_selector_all("#changes .count", "els => els.map(el => [el.dataset.status, el.textContent])")
    assert {status: int(n) for status, n in counts} == {s: shown.count(s) for s in set(shown)} | {
        s: 0 for s in ("regressed", "improved", "unchanged") if s not in shown
    }

    _assert_user_strings_are_text(page)
    page.close()
    assert (tmp_path / "compare.png").stat().st_size > 10_000
