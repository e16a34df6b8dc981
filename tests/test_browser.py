"""report.html and compare.html as people see them: opened in headless Chromium, checked, screenshotted.

Needs Debian's chromium and Playwright's Python package (`.ci/install-browser` installs both); without
them the tests skip and say which is missing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_compare import _two_runs
from test_hostile_inputs import malicious_run, markup, record, write_run

from conftest import SEEDS, Labels, case_yaml, rate_case, threshold_for
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
    # 4 paired rows: 2 thumbnails, 2 in the wipe, the heatmap, 3 full size; 4 one-sided rows: thumbnail, full size.
    assert len(widths) == 4 * 8 + 4 * 2 and all(w > 0 for w in widths)

    sides = [json.loads((run / "results.json").read_text())["results"] for run in (run_a, run_b)]
    cells = page.eval_on_selector_all(
        "#totals > tbody > tr", "rows => rows.map(r => [r.id, ...Array.from(r.cells).map(c => c.textContent)])"
    )
    totals = {row[0]: row[2:4] for row in cells}
    assert totals["total-items"] == [str(len(side)) for side in sides]
    assert totals["total-passed"] == [str(sum(r["clip"]["passed"] for r in side)) for side in sides]
    assert totals["total-mean-clip-prob"] == [
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


def _assert_nothing_ran(page: Any) -> None:
    assert page.query_selector_all(".t2i-xss") == []
    assert page.evaluate("() => window.__t2i_xss") is None


def test_report_html_in_chromium_shows_hostile_node_ids_and_environment_as_text(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, chromium: Any, tmp_path: Path
) -> None:
    # pytest-html writes node ids into the Test cell, and environment values into the page, as HTML: a case
    # file's name, a parametrize id or a CI variable with markup in it must still show as text.
    hostile_file = markup(1) + ".yaml"  # a legal file name
    (pytester.path / hostile_file).write_text(
        case_yaml(
            f"""
            - id: good
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            - id: bad
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.failing}
            """
        )
    )
    broken = f"broken {markup(2)}.yaml"
    (pytester.path / broken).write_text("cases:\n  - id: x\n")
    pytester.makepyfile(
        test_markup=f"""
        import pytest

        @pytest.mark.parametrize("value", [{markup(3)!r}])
        def test_value(value):
            pass
        """
    )
    result = pytester.runpytest(
        hostile_file,
        broken,
        "test_markup.py",
        "--continue-on-collection-errors",
        "--html=reports/report.html",
        "--self-contained-html",
        "--metadata",
        markup(4),
        markup(5),
        "--metadata-from-json",
        json.dumps({"nested": {markup(6): markup(7)}}),
        *model_args,
    )
    result.assert_outcomes(passed=2, failed=1, errors=1)

    page = _open(chromium, pytester.path / "reports/report.html")
    page.wait_for_function("() => document.querySelectorAll('#results-table tbody.results-table-row').length === 4")
    page.click("#show_all_details")  # the logs of passed rows too
    page.screenshot(path=str(tmp_path / "hostile-report.png"), full_page=True)
    _assert_nothing_ran(page)
    test_ids = page.eval_on_selector_all("td.col-testId", "els => els.map(el => el.textContent)")
    assert sorted(test_ids) == sorted(
        [
            f"{hostile_file}::good[seed=0]",
            f"{hostile_file}::bad[seed=0]",
            f"{broken}::collect",
            f"test_markup.py::test_value[{markup(3)}]",
        ]
    )
    logs = "\n".join(page.eval_on_selector_all(".log", "els => els.map(el => el.textContent)"))
    assert f"{hostile_file}:9: case 'bad', seed 0" in logs and broken in logs
    environment = page.inner_text("#environment")
    for text in (markup(4), markup(5), markup(6), markup(7)):
        assert text in environment
    summary = page.inner_text("#t2i-summary")
    assert hostile_file in summary
    page.close()


def test_compare_and_merge_pages_of_a_malicious_results_json_in_chromium(
    chromium: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Made by hand, as an attacker would: markup in every string field, records of the wrong shape, and
    # images outside the run (absolute, ../, a symlink) or not PNGs.
    run, strings, refused_ids = malicious_run(tmp_path)
    clean = write_run(tmp_path / "clean", [record("owl")])
    pages = {"compare": tmp_path / "compare.html", "merge": tmp_path / "merged/report.html"}
    assert main(["compare", str(run), str(clean), "-o", str(pages["compare"])]) == 1
    printed = {"compare": capsys.readouterr().err}
    assert main(["merge", str(run), str(clean), "-o", str(tmp_path / "merged")]) == 1
    printed["merge"] = capsys.readouterr().err
    shown_on = {
        "compare": ("case", "file", "prompt", "label", "distractor", "top_class", "resnet_expect", "fault"),
        "merge": ("id", "case", "file", "prompt", "negative_prompt", "tag", "label", "distractor", "top_class"),
    }
    shown_on["merge"] += ("resnet_expect", "fault", "outcome", "timing", "warning", "baseline", "id2")
    for command, path in pages.items():
        page = _open(chromium, path)
        page.screenshot(path=str(tmp_path / f"{command}.png"), full_page=True)
        _assert_nothing_ran(page)
        listed = page.eval_on_selector_all("#t2i-refused li", "els => els.map(el => el.textContent)")
        prefix = f"python -m harness {command}: refused: "
        assert listed == [line[len(prefix) :] for line in printed[command].splitlines() if line.startswith(prefix)]
        named = {match for line in listed for match in re.findall(r"\(id '([^']*)'\)", line)}
        assert named == refused_ids, command  # every refused record is named, by id
        text = page.inner_text("body")
        for field in (*shown_on[command], "environment key", "environment value"):
            assert strings[field] in text, (command, field)
        assert len(_image_widths(page)) > 0 and all(w > 0 for w in _image_widths(page))  # the images it kept load
        page.close()


def test_report_html_in_chromium_shows_rates_and_filters_unstable_cases(
    pytester: pytest.Pytester,
    run_args: list[str],
    clip_labels: Labels,
    seed_probs: list[float],
    chromium: Any,
    tmp_path: Path,
) -> None:
    five = threshold_for(seed_probs, 5)
    pytester.makefile(
        ".yaml",
        suite=case_yaml(
            rate_case(clip_labels, "unstable", min_prob=five, min_pass_rate=0.5)
            + rate_case(clip_labels, "steady", min_prob=threshold_for(seed_probs, SEEDS), min_pass_rate=0.9)
            + f'- id: plain\n  prompt: "{clip_labels.prompt}"\n  seeds: 2\n  clip: {clip_labels.passing}\n'
        ),
    )
    result = pytester.runpytest("suite.yaml", "--html=reports/report.html", "--self-contained-html", *run_args)
    result.assert_outcomes(passed=4)  # two rate-gated cases and two seeds of the plain one
    page = _open(chromium, pytester.path / "reports/report.html")
    page.wait_for_function("() => document.querySelectorAll('#results-table tbody.results-table-row').length === 4")
    page.screenshot(path=str(tmp_path / "rates.png"), full_page=True)

    totals = page.eval_on_selector("#t2i-case-totals", "el => ({...el.dataset})")
    assert totals == {"cases": "3", "passed": "3", "unstable": "1", "gated": "2"}
    by_case = _table(page, "#t2i-by-case")
    assert by_case["suite.yaml::unstable"][2:9] == ["5", "8", "62.5%", "30.6%-86.3%", "50%", "passed", "unstable"]
    assert by_case["suite.yaml::steady"][2:9] == ["8", "8", "100%", "67.6%-100%", "90%", "passed", ""]
    assert by_case["suite.yaml::plain"][6:9] == ["every seed", "passed", ""]

    def visible_cases() -> list[str]:
        return page.eval_on_selector_all(
            "#t2i-by-case > tbody > tr", "rows => rows.filter(r => r.offsetParent !== null).map(r => r.dataset.key)"
        )

    assert len(visible_cases()) == 3
    page.check("#t2i-only-unstable")
    assert visible_cases() == ["suite.yaml::unstable"]
    page.uncheck("#t2i-only-unstable")
    assert len(visible_cases()) == 3

    # The rate-gated case's one row shows all 8 seeds' images, each bordered by its own verdict.
    row = page.locator("#results-table tbody.results-table-row", has_text="suite.yaml::unstable")
    captions = row.locator("figure.t2i-seed figcaption").all_inner_texts()
    assert len(captions) == SEEDS and sum("passed" in c for c in captions) == 5
    assert "5 of 8 seeds passed (62.5%, 95% interval 30.6%-86.3%); needs 50%" in row.inner_text()
    assert all(0 < width <= 256 for width in _image_widths(page, "#results-table img"))
    assert len(_image_widths(page, "#t2i-grid img")) == 2 * SEEDS + 2  # every seed's image in the grid
    page.close()


def test_compare_html_diff_views_in_chromium(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, chromium: Any, tmp_path: Path
) -> None:
    from PIL import Image

    from harness.reports.image_diff import difference_stats

    # Two runs of one item whose prompt and negative prompt differ, and nothing else they were given.
    clip = f'{{expect: "{clip_labels.winner}", distractors: ["{clip_labels.loser}", "{XSS_LABEL}"]}}'
    for run, prompt, negative in (("run-a", XSS_PROMPT, "blurry"), ("run-b", XSS_PROMPT + " at dusk", XSS_LABEL)):
        body = f'- id: owl\n  prompt: "{prompt}"\n  negative_prompt: "{negative}"\n  width: 128\n  height: 128\n'
        pytester.makefile(".yaml", suite=case_yaml(body + f"  clip: {clip}\n"))
        pytester.runpytest("suite.yaml", f"--t2i-report-dir={run}", *model_args)
    records = [
        json.loads((pytester.path / run / "results.json").read_text())["results"][0] for run in ("run-a", "run-b")
    ]
    pngs = [
        Image.open(pytester.path / run / record["image"])
        for run, record in zip(("run-a", "run-b"), records, strict=True)
    ]
    out = pytester.path / "compare.html"
    assert main(["compare", "run-a", "run-b", "-o", str(out), "--image-px", "96"]) == 0  # thumbnails < full size

    page = _open(chromium, out)
    page.screenshot(path=str(tmp_path / "compare-diff.png"), full_page=True)
    # No script on the page, no handler; a policy that would block one anyway.
    assert page.evaluate("() => document.scripts.length") == 0
    assert (
        page.evaluate(
            "() => Array.from(document.querySelectorAll('*'))"
            ".filter(e => e.getAttributeNames().some(n => n.startsWith('on'))).length"
        )
        == 0
    )
    assert "script-src" not in page.get_attribute("meta[http-equiv='Content-Security-Policy']", "content")
    row = page.locator("#items > tbody > tr[data-case='owl']")

    # The parameters: exactly the fields the two records differ in are marked, by class and a visible sign.
    fields = {
        "prompt": "prompt", "negative prompt": "negative_prompt", "steps": "steps", "guidance scale": "guidance_scale",
        "width": "width", "height": "height", "seed": "seed", "tags": "tags", "cache key": "cache_key",
        "pixels (sha256)": "image_sha256",
    }  # fmt: skip
    differing = {name for name, key in fields.items() if records[0][key] != records[1][key]}
    assert differing == {"prompt", "negative prompt", "cache key", "pixels (sha256)"}
    marked = row.locator("table.t2i-params tr.t2i-differs")
    assert set(marked.evaluate_all("rows => rows.map(r => r.dataset.param)")) == differing
    assert marked.locator("td.t2i-mark").all_inner_texts() == ["≠ differs"] * len(differing)
    assert row.locator("table.t2i-params td.t2i-mark").all_inner_texts().count("≠ differs") == len(differing)
    verdicts = row.locator("table.t2i-verdicts tr[data-judge='overall'] td").all_inner_texts()
    passed = ["pass" if r["clip"]["passed"] else "fail" for r in records]
    assert verdicts[:2] == passed

    # The wipe: dragging its handle moves the line, and what shows right of the old line turns from B to A.
    over = row.locator(".t2i-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    assert box is not None and box["height"] == 96 and 45 <= box["width"] <= 52  # half of 96, and the line
    probe = [box["x"] + box["width"] + 20, box["y"] + box["height"] / 2]
    shown = "([x, y]) => document.elementFromPoint(x, y).alt"
    assert page.evaluate(shown, probe) == "B"
    handle = (box["x"] + box["width"] - 4, box["y"] + box["height"] - 4)
    page.mouse.move(*handle)
    page.mouse.down()
    page.mouse.move(handle[0] + 40, handle[1], steps=4)
    page.mouse.up()
    widened = over.bounding_box()
    assert widened is not None and widened["width"] >= box["width"] + 30
    assert page.evaluate(shown, probe) == "A"

    # The heatmap and its numbers, computed from the two runs' PNGs.
    stats = difference_stats(*pngs)
    heat = row.locator("figure.t2i-heat:not(.t2i-full-diff)")
    assert heat.is_visible() and not stats.identical
    assert heat.get_attribute("data-max-abs") == str(stats.max_abs) and stats.max_abs > 0
    assert heat.get_attribute("data-changed") == str(stats.changed)
    assert f"max difference {stats.max_abs}, mean {stats.mean_abs:.2f}" in heat.inner_text()
    # Shrunk by a whole factor (128 / 2) keeping each block's largest difference, shown as large as the thumbnails.
    assert heat.locator("img").evaluate("img => [img.naturalWidth, img.clientWidth]") == [64, 96]

    # Full size, one click away: the thumbnail opens the panel; its images are the generated images' size.
    panel = row.locator(".t2i-full")
    assert not panel.is_visible()
    row.locator("td > a > img").first.click()
    assert panel.is_visible() and page.evaluate("() => location.hash") == f"#{panel.get_attribute('id')}"
    page.screenshot(path=str(tmp_path / "compare-full-size.png"))
    for css, png in (("img.t2i-full-a", pngs[0]), ("img.t2i-full-b", pngs[1])):
        image = panel.locator(css)
        assert image.is_visible() and image.evaluate("img => img.naturalWidth") == png.width == 128
    assert panel.locator("figure.t2i-full-diff img").evaluate("img => img.naturalWidth") == 128
    panel.locator("a.t2i-close").click()
    assert not panel.is_visible()

    _assert_user_strings_are_text(page)
    page.close()
