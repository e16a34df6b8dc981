"""python -m harness compare: the page's deltas, order and totals equal what the two results.json files say."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
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

    # A paired row (the two runs' images differ: 2 steps and 3) has both thumbnails, both again in the wipe, the
    # heatmap, and in its full-size panel both images and the heatmap; a one-sided row its thumbnail and full size.
    assert len(page.images) == 4 * (2 + 2 + 1 + 3) + 4 * (1 + 1)
    kinds = [src.partition(";")[0] for src in page.images]
    assert kinds.count("data:image/png") == 4 * 2  # the heatmaps; every image of a run is a JPEG
    assert kinds.count("data:image/jpeg") == len(page.images) - 4 * 2
    for src in page.images:
        with Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2]))) as image:
            assert image.size == (64, 64)  # the tiny pipeline's images, below 256 px: shown at their own size
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
    assert len(page.images) == 6 * 2  # run B's only: each thumbnail and its full size; no diff without two images

    # A baseline keeps no prompt or generation settings: those rows say so and are never marked as differing;
    # what it keeps (seed, cache key, pixels' digest, verdicts) is compared with run B's.
    tree = _tree(out)
    row = _row(tree, "good", 0)
    params = _params(row)
    assert params["prompt"][:2] == ["not kept in a baseline", clip_labels.prompt]
    assert params["steps"][:2] == ["not kept in a baseline", "3"]
    assert _differing(row) == {"cache key", "pixels (sha256)"}  # 2 steps in A, 3 in B
    verdicts = _verdicts(row)
    assert verdicts["outcome"][:2] == ["not kept in a baseline", b[("good", 0)]["outcome"]]
    assert verdicts["clip"][:2] == ["pass" if side[("good", 0)]["clip"]["passed"] else "fail" for side in (a, b)]


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


# -- the diff views, the parameters and the verdicts, on hand-made runs with known pixels ----------------------


def _tree(page: Path) -> ET.Element:
    """The page as an element tree (compare.html is well-formed XML after its doctype)."""
    return ET.fromstring(page.read_text(encoding="utf-8").split("\n", 1)[1])


def _row(tree: ET.Element, case: str, seed: int = 0) -> ET.Element:
    rows = [tr for tr in tree.iter("tr") if tr.get("data-case") == case and tr.get("data-seed") == str(seed)]
    assert len(rows) == 1, case
    return rows[0]


def _text(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def _table_rows(row: ET.Element, css: str, key: str) -> dict[str, list[str]]:
    """The rows of a table in the item row, by their data-* key: [A's cell, B's cell, the mark] as text."""
    table = row.find(f".//table[@class='{css}']")
    assert table is not None
    return {tr.get(key, ""): [_text(td) for td in tr.findall("td")] for tr in table.iter("tr") if tr.get(key)}


def _params(row: ET.Element) -> dict[str, list[str]]:
    return _table_rows(row, "t2i-params", "data-param")


def _verdicts(row: ET.Element) -> dict[str, list[str]]:
    return _table_rows(row, "t2i-verdicts", "data-judge")


def _differing(row: ET.Element) -> set[str]:
    """The parameters marked as differing, checked to carry the class and the visible sign together."""
    table = row.find(".//table[@class='t2i-params']")
    assert table is not None
    marked = set()
    for tr in table.iter("tr"):
        cells = tr.findall("td")
        if tr.get("data-param") is None:
            continue
        has_class = "t2i-differs" in (tr.get("class") or "").split()
        assert has_class == (_text(cells[-1]) == "≠ differs"), tr.get("data-param")
        if has_class:
            marked.add(tr.get("data-param", ""))
    return marked


def _decoded(src: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2])))


def _hand_made_runs(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[Image.Image, Image.Image]]]:
    """Runs A and B of four cases whose pixels are known: one region changed, identical pixels, another size,
    and one case in B only; the changed case's prompt and negative prompt differ and its CLIP verdict flips."""
    from test_hostile_inputs import record, write_run

    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    flat = Image.new("RGB", (64, 64), (40, 90, 140))
    changed = flat.copy()
    for x in range(8, 12):
        for y in range(16, 20):
            changed.putpixel((x, y), (70, 80, 145))  # channel differences 30, 10, 5: each pixel's is 30
    pairs = {
        "changed": (flat, changed),
        "same": (noise, noise.copy()),
        "resized": (flat, flat.resize((32, 32))),
    }
    sha = "ab" * 32
    clip_failed = {**record()["clip"], "passed": False, "probs": [0.25, 0.75], "margin": -0.5}
    a_records = [
        record("changed", prompt=PROMPT, negative_prompt=None),
        record("same", image_sha256=sha),
        record("resized"),
    ]
    b_records = [
        record("changed", prompt=PROMPT + " at dusk", negative_prompt=LABEL, clip=clip_failed, outcome="failed"),
        record("same", image_sha256=sha),
        record("resized", width=32, height=32),
        record("only-b"),
    ]
    for run, records, side in ((tmp_path / "a", a_records, 0), (tmp_path / "b", b_records, 1)):
        for item in records:
            path = run / item["image"]
            path.parent.mkdir(parents=True, exist_ok=True)
            pairs.get(item["case"], (noise, noise))[side].save(path)
        write_run(run, records)
    return tmp_path / "a", tmp_path / "b", pairs


def test_compare_shows_wipe_heatmap_full_size_parameters_and_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.reports.image_diff import difference_heatmap

    run_a, run_b, pairs = _hand_made_runs(tmp_path)
    out = tmp_path / "compare.html"
    assert main(["compare", str(run_a), str(run_b), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    tree = _tree(out)
    # Nothing on the page runs: no script element, no event handler; and its policy forbids any that slipped in.
    assert not [e for e in tree.iter() if e.tag == "script" or any(k.startswith("on") for k in e.attrib)]
    assert tree.find(".//meta[@http-equiv='Content-Security-Policy']").get("content") == (  # type: ignore[union-attr]
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    )

    # One changed region: the wipe holds both thumbnails, A's on top; the heatmap's numbers are exact.
    row = _row(tree, "changed")
    wipe = row.find(".//div[@class='t2i-wipe']")
    assert wipe is not None
    under, over = wipe.find("img"), wipe.find("div[@class='t2i-over']/img")
    assert under is not None and over is not None and under.get("alt") == "B" and over.get("alt") == "A"
    thumbs = [img.get("src") for img in row.findall("td/a/img")]
    assert thumbs == [over.get("src"), under.get("src")]  # A's and B's thumbnails, the same data
    heat = row.find(".//figure[@class='t2i-heat']")
    assert heat is not None
    assert (heat.get("data-max-abs"), heat.get("data-changed"), heat.get("data-pixels")) == ("30", "16", "4096")
    assert float(heat.get("data-mean-abs", "")) == 30 * 16 / 4096
    assert _text(heat).startswith(
        "Difference: max difference 30, mean 0.12 (0-255 per channel); 0.39% of pixels changed (16 of 4,096); "
        "colour scale: black 0 to pale yellow 30."
    )
    heat_img = heat.find("img")
    assert heat_img is not None
    expected, _ = difference_heatmap(*pairs["changed"], fit=256)
    with _decoded(heat_img.get("src", "")) as shown:
        assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(expected))

    # Its full-size panel: one click away from either thumbnail or the link, closed by a link back to the row.
    panel = row.find(".//div[@class='t2i-full']")
    assert panel is not None and panel.get("id") == "full-0" and row.get("id") == "item-0"
    assert {a.get("href") for a in row.findall(".//a") if a.get("class") != "t2i-close"} == {"#full-0"}
    close = panel.find(".//a[@class='t2i-close']")
    assert close is not None and close.get("href") == "#item-0"
    full = {img.get("class"): img.get("src", "") for img in panel.iter("img")}
    assert set(full) == {"t2i-full-a", "t2i-full-b", None}  # None: the full-size heatmap
    for css, image in (("t2i-full-a", pairs["changed"][0]), ("t2i-full-b", pairs["changed"][1])):
        with _decoded(full[css]) as shown:
            assert shown.format == "JPEG" and shown.size == image.size
    with _decoded(full[None]) as shown:
        assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(difference_heatmap(*pairs["changed"])[0]))

    # Every parameter of both runs; exactly the two that differ are marked (the class and the sign).
    params = _params(row)
    assert list(params) == [
        "prompt", "negative prompt", "steps", "guidance scale", "width", "height", "seed", "tags", "cache key",
        "pixels (sha256)",
    ]  # fmt: skip
    assert params["prompt"] == [PROMPT, PROMPT + " at dusk", "≠ differs"]
    assert params["negative prompt"] == ["(none)", LABEL, "≠ differs"]
    assert params["guidance scale"] == ["7.5", "7.5", ""] and params["tags"] == ["animals", "animals", ""]
    assert params["cache key"] == ["not recorded", "not recorded", ""]
    assert _differing(row) == {"prompt", "negative prompt"}
    # Each side's verdict per judge and overall, and pytest's outcome; the flips are marked.
    assert _verdicts(row) == {
        "clip": ["pass", "fail", "≠ differs"],
        "resnet": ["pass", "pass", ""],
        "overall": ["pass", "fail", "≠ differs"],
        "outcome": ["passed", "failed", "≠ differs"],
    }

    # Identical pixels: said in words, no heatmap or wipe; the full-size panel shows the one image once.
    row = _row(tree, "same")
    assert row.find(".//p[@class='t2i-identical']") is not None
    assert "A and B are the same 64x64 image, with the same sha256 in both records:" in _text(row)
    assert row.find(".//div[@class='t2i-wipe']") is None and row.find(".//figure[@class='t2i-heat']") is None
    assert [img.get("class") for img in row.find(".//div[@class='t2i-full']").iter("img")] == ["t2i-full-a"]  # type: ignore[union-attr]
    assert _differing(row) == set()
    # Another size: no per-pixel views, said why; the width and height rows are marked.
    row = _row(tree, "resized")
    assert "No overlay or difference: the images differ in size (64x64 and 32x32)." in _text(row)
    assert row.find(".//div[@class='t2i-wipe']") is None and row.find(".//figure[@class='t2i-heat']") is None
    assert _differing(row) == {"width", "height"}
    # Only in B: its image and full size; A's column says so; nothing is marked against a missing side.
    row = _row(tree, "only-b")
    assert "one side has no image: no overlay or difference" in _text(row)
    assert _params(row)["prompt"][0] == "not in this run" and _differing(row) == set()
    assert _verdicts(row)["overall"] == ["not in this run", "pass", ""]

    # The escaped prompt and label: text, never markup.
    assert "<b class='t2i-xss'>" not in page and "<i>a lighthouse</i>" not in page

    # --full-size png embeds each run's own PNG bytes; none drops the panels and their links.
    assert main(["compare", str(run_a), str(run_b), "-o", str(out), "--full-size", "png"]) == 0
    panel = _row(_tree(out), "changed").find(".//div[@class='t2i-full']")
    assert panel is not None
    full = {img.get("class"): img.get("src", "") for img in panel.iter("img")}
    image_file = run_a / "images/a.yaml/changed-seed0.png"
    assert base64.b64decode(full["t2i-full-a"].partition(",")[2]) == image_file.read_bytes()
    png_size = out.stat().st_size
    assert main(["compare", str(run_a), str(run_b), "-o", str(out), "--full-size", "none"]) == 0
    tree = _tree(out)
    assert not [div for div in tree.iter("div") if div.get("class") == "t2i-full"]
    assert not [a for a in tree.iter("a") if (a.get("href") or "").startswith("#full-")]
    assert out.stat().st_size < png_size
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["compare", str(run_a), str(run_b), "--full-size", "tiff"])
    error = capsys.readouterr().err  # argparse's wording; its quoting of the choices varies across Pythons
    assert "argument --full-size: invalid choice: 'tiff' (choose from " in error and "none" in error
