"""python -m harness compare: the page's deltas, order and totals equal what the two results.json files say."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import Labels, case_yaml
from harness.__main__ import main

PROMPT = "a violin, <b class='t2i-xss'>bold</b> & friends"
LABEL = "<i>a lighthouse</i>"


def _two_runs(
    pytester: pytest.Pytester, model_args: list[str], labels: Labels, prompt: str = PROMPT, label: str = LABEL
) -> tuple[Path, Path]:
    """Run A (2 steps, saving baseline 'a') and run B (3 steps): different images, some cases only in one."""

    def suite(only: str) -> str:
        return f"""
            - id: good
              prompt: "{labels.prompt}"
              clip: {labels.passing}
            - id: bad
              prompt: "{labels.prompt}"
              clip: {labels.failing}
            - id: {only}
              prompt: "{prompt}"
              clip: {{expect: "{labels.winner}", distractors: ["{labels.loser}", "{label}"]}}
            """

    pytester.makefile(".yaml", suite=case_yaml(suite("only-a"), steps=2, seeds="[0, 1]"))
    pytester.runpytest("suite.yaml", "--t2i-report-dir=run-a", "--t2i-save-baseline=a", *model_args)
    pytester.makefile(".yaml", suite=case_yaml(suite("only-b"), steps=3, seeds="[0, 1]"))
    pytester.runpytest("suite.yaml", "--t2i-report-dir=run-b", *model_args)
    return pytester.path / "run-a", pytester.path / "run-b"


class _Page(HTMLParser):
    """The item rows (their data-* attributes and deltas), the change counts and the images of a compare page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.images: list[str] = []
        self._count: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-case" in a:
            self.rows.append({**a, "deltas": {}})
        elif tag == "div" and "data-name" in a and self.rows:
            self.rows[-1]["deltas"][a["data-name"]] = float(a["data-value"]) if a["data-value"] else None
        elif tag == "span" and "data-status" in a:
            self._count = a["data-status"]
        elif tag == "img":
            self.images.append(a["src"] or "")

    def handle_data(self, data: str) -> None:
        if self._count is not None:
            self.counts[self._count] = int(data)
            self._count = None

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def _records(run: Path) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["case"], r["seed"]): r for r in json.loads((run / "results.json").read_text())["results"]}


def _intended(record: dict[str, Any]) -> tuple[float, float]:
    probs = record["clip"]["probs"]
    return probs[0], probs[0] - max(probs[1:])


def test_compare_page_deltas_order_and_totals_match_results_json(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    run_a, run_b = _two_runs(pytester, model_args, clip_labels)
    out = pytester.path / "pages/compare.html"
    assert main(["compare", str(run_a), str(run_b), "-o", str(out)]) == 0
    page = _Page()
    page.feed(out.read_text())
    a, b = _records(run_a), _records(run_b)

    paired = [row for row in page.rows if row["data-status"] in ("regressed", "improved", "unchanged")]
    assert len(paired) == 4  # good and bad, seeds 0 and 1
    for row in paired:
        key = (row["data-case"], int(row["data-seed"]))
        (prob_a, margin_a), (prob_b, margin_b) = _intended(a[key]), _intended(b[key])
        assert row["deltas"]["clip.prob"] == pytest.approx(prob_b - prob_a, abs=1e-12)
        assert row["deltas"]["clip.margin"] == pytest.approx(margin_b - margin_a, abs=1e-12)
    # Worst first: verdict flips (none here), then by the larger drop of probability or margin.
    worst = [min(row["deltas"]["clip.prob"], row["deltas"]["clip.margin"]) for row in paired]
    assert worst == sorted(worst)
    assert [row["data-status"] for row in page.rows[4:]] == ["only in A"] * 2 + ["only in B"] * 2
    assert page.rows[4]["data-case"] == "only-a" and page.rows[6]["data-case"] == "only-b"

    for ident, records in (("a", a), ("b", b)):
        passed = sum(r["clip"]["passed"] for r in records.values())
        mean = sum(_intended(r)[0] for r in records.values()) / len(records)
        column = 0 if ident == "a" else 1
        assert _total_cell(out, "total-passed", column) == str(passed)
        assert _total_cell(out, "total-mean-clip-prob", column) == f"{mean:.4f}"
    statuses = [row["data-status"] for row in paired]
    for status in ("regressed", "improved", "unchanged"):
        assert page.counts[status] == statuses.count(status)
    assert page.counts["only in A"] == 2 and page.counts["only in B"] == 2

    # Two images per paired row, one per one-sided row; all JPEG, at most 256 px.
    assert len(page.images) == 4 * 2 + 4
    for src in page.images:
        assert src.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2]))) as image:
            assert max(image.size) <= 256
    # User strings are escaped, never markup.
    html = out.read_text()
    assert (
        "<b class='t2i-xss'>" not in html and "&lt;b class=&#x27;t2i-xss&#x27;&gt;bold&lt;/b&gt; &amp; friends" in html
    )
    assert "<i>a lighthouse</i>" not in html and "&lt;i&gt;a lighthouse&lt;/i&gt;" in html


def _total_cell(page: Path, row_id: str, column: int) -> str:
    import re

    row = re.search(rf'<tr id="{row_id}">(.*?)</tr>', page.read_text())
    assert row is not None
    return re.findall(r'<td class="num [ab]">(.*?)</td>', row.group(1))[column]


def test_compare_accepts_a_baseline_in_place_of_a_run(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    run_a, run_b = _two_runs(pytester, model_args, clip_labels)
    out = pytester.path / "compare.html"
    # As a user would type it: the module's command line, in a subprocess.
    done = subprocess.run(
        [sys.executable, "-m", "harness", "compare", "baselines/a", "run-b", "-o", str(out)],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: 8 items: ")
    page = _Page()
    page.feed(out.read_text())
    a, b = _records(run_a), _records(run_b)
    for row in page.rows:
        if row["data-status"] in ("regressed", "improved", "unchanged"):
            key = (row["data-case"], int(row["data-seed"]))
            # The baseline keeps 4 decimals.
            assert row["deltas"]["clip.prob"] == pytest.approx(_intended(b[key])[0] - _intended(a[key])[0], abs=1e-4)
    assert "baseline: scores only" in out.read_text()
    assert len(page.images) == 6  # run B's only


def test_compare_reports_bad_inputs_in_one_line(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    pytester.mkdir("empty")
    assert main(["compare", "empty", "missing", "-o", "x.html"]) == 2
    # RUN_A is read first: its problem is the one line, and nothing is written.
    assert capsys.readouterr().err == (
        "python -m harness compare: empty: neither a run (no results.json) nor a baseline (no baseline .json files "
        "in it)\n"
    )
    assert not (pytester.path / "x.html").exists()
    pytester.mkdir("run")
    pytester.path.joinpath("run/results.json").write_text('{"results": []}')
    assert main(["compare", "run", "missing", "-o", "x.html"]) == 2
    assert capsys.readouterr().err == "python -m harness compare: missing: no such file or directory\n"
    assert not (pytester.path / "x.html").exists()
    pytester.path.joinpath("broken").mkdir()
    pytester.path.joinpath("broken/results.json").write_text("{not json")
    assert main(["compare", "broken", "broken"]) == 2
    assert capsys.readouterr().err == (
        "python -m harness compare: broken/results.json:1: not a readable results.json: not valid JSON "
        "(Expecting property name enclosed in double quotes)\n"
    )
    with pytest.raises(SystemExit):
        main(["compare", "a", "b", "--tolerance", "2"])
    assert "--tolerance: must be a number in [0, 1]" in capsys.readouterr().err


def test_readme_compare_recipe_keeps_each_runs_report() -> None:
    # pytest.ini sends every run's report.html to reports/: the recipe must give each run its own.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("**Compare two runs**", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    runs = [line.split("#")[0].split() for line in block.splitlines() if line.startswith("pytest ")]
    assert len(runs) == 2
    dirs = []
    for words in runs:
        report_dir = words[words.index("--t2i-report-dir") + 1]
        assert words[words.index("--html") + 1] == f"{report_dir}/report.html"
        dirs.append(report_dir)
    assert len(set(dirs)) == 2
    compare = next(line.split() for line in block.splitlines() if line.startswith("python -m harness compare"))
    assert compare[4:6] == dirs
