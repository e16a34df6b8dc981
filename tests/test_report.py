"""report.html (pytest-html) and results.json: images, prompts, every score, the environment."""

from __future__ import annotations

import base64
import json
import os
import re
from html import unescape

import pytest
from PIL import Image

from conftest import Labels, case_yaml, passing_case


@pytest.fixture
def finished_run(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> pytest.RunResult:
    pytester.makefile(
        ".yaml",
        owls=case_yaml(
            f"""
            - id: owl
              prompt: "{clip_labels.prompt}"
              negative_prompt: "blurry, low quality"
              guidance_scale: 6.5
              clip:
                expect: "{clip_labels.winner}"
                distractors: ["{clip_labels.loser}", "a pencil sketch"]
              resnet:
                expect: ["great grey owl"]
                top_k: 1000
              tags: [animals]
            """,
            seeds="[0, 3]",
        ),
    )
    pytester.makeini("[pytest]\nmarkers =\n    animals: cases of animals\n")
    return pytester.runpytest("owls.yaml", "--html=reports/report.html", "--self-contained-html", *model_args)


def test_results_json_has_one_record_per_item_with_values_used(
    pytester: pytest.Pytester, finished_run: pytest.RunResult, clip_labels: Labels
) -> None:
    finished_run.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "reports/results.json").read_text())
    records = document["results"]
    assert [r["id"] for r in records] == ["owls.yaml::owl[seed=0]", "owls.yaml::owl[seed=3]"]
    record = records[1]
    assert record["case"] == "owl" and record["file"] == "owls.yaml" and record["seed"] == 3
    assert record["prompt"] == clip_labels.prompt and record["negative_prompt"] == "blurry, low quality"
    assert (record["steps"], record["guidance_scale"], record["width"], record["height"]) == (2, 6.5, 64, 64)
    assert record["clip"]["labels"] == [clip_labels.winner, clip_labels.loser, "a pencil sketch"]
    assert record["clip"]["expect"] == clip_labels.winner and record["clip"]["passed"] is True
    assert sum(record["clip"]["probs"]) == pytest.approx(1.0, abs=1e-5)
    assert record["resnet"]["expect"] == ["great grey owl"] and record["resnet"]["top_k"] == 1000
    assert len(record["resnet"]["top"]) == 5 and record["resnet"]["passed"] is True
    assert record["outcome"] == "passed"
    assert {"generate_s", "clip_s", "resnet_s", "total_s"} <= set(record["timings"])
    image = pytester.path / "reports" / record["image"]
    assert record["image"] == "images/owls.yaml/owl-seed3.png"
    with Image.open(image) as png:
        assert png.size == (64, 64) and png.mode == "RGB"
    assert document["environment"]["t2i device"] == "cpu"
    assert document["environment"]["t2i pipeline"].endswith("sd-pipeline @ local dir")


def report_data(html: str) -> dict:
    """The JSON that pytest-html embeds in its page (environment, and each row's cells)."""
    blob = re.search(r'data-jsonblob="([^"]*)"', html)
    assert blob is not None
    return json.loads(unescape(blob.group(1)))


def test_report_html_rows_show_image_prompt_and_scores(
    pytester: pytest.Pytester, finished_run: pytest.RunResult, clip_labels: Labels
) -> None:
    page = (pytester.path / "reports/report.html").read_text()
    rows = [row for tests in report_data(page)["tests"].values() for row in tests]
    html = "\n".join(cell for row in rows for cell in row["resultsTableRow"])
    assert 'href="images/owls.yaml/owl-seed0.png"' in html
    thumbnails = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", html)
    assert len(thumbnails) == 2
    assert base64.b64decode(thumbnails[0])[:3] == b"\xff\xd8\xff"  # a JPEG
    for text in (clip_labels.prompt, "blurry, low quality", clip_labels.winner, "a pencil sketch", "great grey owl"):
        assert text in html
    for header in ("Image", "Prompt", "Negative prompt", "Seed", "Steps", "Guidance", "Size", "CLIP", "ResNet top 5"):
        assert f"<th>{header}</th>" in page
    # Each value in its own column: pytest-html's Result and Test cells come first, then the harness's.
    for row in rows:
        cells = [re.sub(r"<[^>]+>", "", cell) for cell in row["resultsTableRow"][2:12]]
        seed = "0" if "seed=0" in row["resultsTableRow"][1] else "3"
        assert dict(zip(("Seed", "Steps", "Guidance", "Size"), cells[3:7], strict=True)) == {
            "Seed": seed,
            "Steps": "2",
            "Guidance": "6.5",
            "Size": "64x64",
        }
        assert cells[1] == clip_labels.prompt and cells[2] == "blurry, low quality"


def test_report_environment_names_models_device_and_versions(
    pytester: pytest.Pytester, finished_run: pytest.RunResult
) -> None:
    environment = report_data((pytester.path / "reports/report.html").read_text())["environment"]
    assert environment["t2i pipeline"].endswith("sd-pipeline @ local dir")
    assert environment["t2i clip"].endswith("clip @ local dir")
    assert environment["t2i resnet"].endswith("resnet50.safetensors @ file resnet50.safetensors")
    assert environment["t2i device"] == "cpu" and environment["t2i dtype"] == "float32"
    for package in ("torch", "torchvision", "diffusers", "transformers"):
        assert re.match(r"\d+\.\d+", environment[package])


def test_report_dir_option_moves_results_and_images(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    pytester.makefile(
        ".yaml",
        owls=passing_case(clip_labels),
    )
    pytester.makeini("[pytest]\nt2i_report_dir = out/from-ini\n")
    # A relative ini value is relative to the ini file, whatever the current directory.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(pytester.mkdir("sub"))
        pytester.runpytest("../owls.yaml", *model_args).assert_outcomes(passed=1)
    assert (pytester.path / "out/from-ini/results.json").is_file()
    assert (pytester.path / "out/from-ini/images/owls.yaml/owl-seed0.png").is_file()
    # On the command line it is relative to the current directory and wins over the ini.
    pytester.runpytest("owls.yaml", "--t2i-report-dir=cli-dir", *model_args).assert_outcomes(passed=1)
    assert (pytester.path / "cli-dir/results.json").is_file()


def test_report_html_is_replaced_atomically(pytester: pytest.Pytester) -> None:
    # Any run with --html goes through the harness's hooks: a plain test keeps this fast.
    pytester.makepyfile("def test_nothing():\n    pass\n")
    report = pytester.mkdir("reports") / "report.html"
    report.write_text("the last run's report")
    # A hard link shares the file: an in-place write would change what it reads, a rename leaves it alone.
    os.link(report, pytester.path / "link.html")
    before = report.stat().st_ino
    pytester.runpytest("--html=reports/report.html", "--self-contained-html").assert_outcomes(passed=1)
    assert (pytester.path / "link.html").read_text() == "the last run's report"
    assert report.stat().st_ino != before
    assert '<title id="head-title">t2i-harness report</title>' in report.read_text()
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]  # no temp file left


@pytest.mark.parametrize("missing", ["_write_report", "_generate_environment"])
def test_report_stops_with_a_usage_error_when_pytest_html_lacks_what_it_wraps(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    from pytest_html import __version__
    from pytest_html.basereport import BaseReport

    monkeypatch.delattr(BaseReport, missing)  # as a pytest-html release without it would be
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--html=report.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        f"ERROR: --html: the t2i harness cannot make pytest-html {__version__}'s report atomic and escaped (Report "
        f"lacks {missing}). It supports pytest-html 4.1 to 4.x: install one (pip install 'pytest-html>=4.1,<5'), or "
        "run without --html."
    )
    assert not (pytester.path / "report.html").exists()


def test_report_escapes_environment_values(pytester: pytest.Pytester) -> None:
    # pytest-html puts environment values (and the keys and values of nested ones) into the page as HTML.
    pytester.makepyfile("def test_nothing():\n    pass\n")
    value = "<img src=x onerror=alert(1)>"
    nested = json.dumps({"pkgs": {"<b>key</b>": "<i>value</i>"}})
    pytester.runpytest("--html=report.html", "--metadata", "evil", value, "--metadata-from-json", nested)
    environment = report_data((pytester.path / "report.html").read_text())["environment"]
    assert environment["evil"] == "&lt;img src=x onerror=alert(1)&gt;"
    assert environment["pkgs"] == {"&lt;b&gt;key&lt;/b&gt;": "&lt;i&gt;value&lt;/i&gt;"}
