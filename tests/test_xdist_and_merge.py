"""Several workers (pytest-xdist, on CPU here) and several machines (shards merged into one report)."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from typing import Any

import pytest
from test_report import report_data

from conftest import SEEDS, Labels, case_yaml, rate_case, threshold_for
from harness.pytest_plugin.xdist_scheduling import case_scope


def two_files(pytester: pytest.Pytester, labels: Labels) -> None:
    for name in ("birds", "foxes"):
        body = "".join(
            f"""
            - id: {name}-{n}
              prompt: "{labels.prompt} {n}"
              clip: {labels.passing}
            """
            for n in range(2)
        )
        pytester.makefile(".yaml", **{name: case_yaml(body, seeds="[0, 1]")})


def test_case_scope_groups_seeds_of_a_case() -> None:
    assert case_scope("cases/animals.yaml::watercolor-owl[seed=0]") == "cases/animals.yaml::watercolor-owl"
    assert case_scope("cases/animals.yml::a.b-c_d[seed=12]") == "cases/animals.yml::a.b-c_d"
    assert case_scope("tests/test_x.py::test_y[1]") is None


def test_xdist_run_writes_complete_report_and_keeps_seeds_together(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels, seed_probs: list[float]
) -> None:
    two_files(pytester, clip_labels)
    # Two rate-gated cases (one item each, 8 seeds): the same case verdicts as a serial run. (Here, not in a
    # test of their own: every xdist run starts two worker processes that import torch, 10 s of CPU.)
    min_prob = threshold_for(seed_probs, 6)
    pytester.makefile(
        ".yaml",
        rates=case_yaml(
            rate_case(clip_labels, "gated-pass", min_prob=min_prob, min_pass_rate=0.75)
            + rate_case(clip_labels, "gated-fail", min_prob=min_prob, min_pass_rate=0.8)
        ),
    )
    # The controller runs in this process (it imports no torch with an explicit cpu device); its two
    # workers are processes of their own, as in any xdist run.
    result = pytester.runpytest_inprocess(
        "-n", "2", "-v", "--html=reports/report.html", "--self-contained-html", "--t2i-no-cache", *model_args
    )
    result.assert_outcomes(passed=8 + 1, failed=1)
    workers: dict[str, set[str]] = {}
    for worker, case in re.findall(r"\[(gw\d)\] .*PASSED \S+::(\S+)\[seed=\d\]", result.stdout.str()):
        workers.setdefault(case, set()).add(worker)
    assert len(workers) == 4 and all(len(w) == 1 for w in workers.values()), workers  # seeds stay together
    assert len({w for ws in workers.values() for w in ws}) == 2  # both workers did work

    document = json.loads((pytester.path / "reports/results.json").read_text())
    plain = [r for r in document["results"] if r["file"] != "rates.yaml"]
    assert len(plain) == 8 and len(document["results"]) == 8 + 2 * SEEDS
    assert {r["outcome"] for r in plain} == {"passed"}
    assert all((pytester.path / "reports" / r["image"]).is_file() for r in document["results"])
    assert document["environment"]["t2i pipeline"].endswith("sd-pipeline @ local dir")
    html = (pytester.path / "reports/report.html").read_text()
    # One thumbnail per record in the table and one in the summary grid, no more, no less.
    assert html.count("data:image/jpeg;base64,") == 2 * len(document["results"])
    rows = [row for tests in report_data(html)["tests"].values() for row in tests]
    assert len(rows) == 8 + 2
    for record in document["results"]:
        assert html.count(f'href="{record["image"]}"') == 1, record["image"]  # its grid cell
    for record in plain:
        (row,) = [row for row in rows if record["id"] in row["resultsTableRow"][1]]  # and its table row
        assert "".join(row["resultsTableRow"]).count(f'href="{record["image"]}"') == 1
    assert "sd-pipeline @ local dir" in html

    serial = pytester.runpytest("rates.yaml", "--t2i-no-cache", "--t2i-report-dir=serial", *model_args)
    serial.assert_outcomes(passed=1, failed=1)

    def verdicts(report_dir: str) -> list[tuple[Any, ...]]:
        cases = json.loads((pytester.path / report_dir / "results.json").read_text())["cases"]
        return sorted(
            (c["case"], c["seeds_run"], c["seeds_passed"], c["passed"], c["unstable"])
            for c in cases
            if c["file"] == "rates.yaml"
        )

    assert (
        verdicts("reports")
        == verdicts("serial")
        == [
            ("gated-fail", SEEDS, 6, False, True),
            ("gated-pass", SEEDS, 6, True, True),
        ]
    )


def test_merge_shards_into_one_report(pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels) -> None:
    two_files(pytester, clip_labels)
    # Two CI shards, each running part of the suite with pytest's own selection.
    pytester.runpytest("birds.yaml", "--t2i-report-dir=shard-1", *model_args).assert_outcomes(passed=4)
    pytester.runpytest("foxes.yaml", "--t2i-report-dir=shard-2", *model_args).assert_outcomes(passed=4)
    merged = subprocess.run(
        [sys.executable, "-m", "harness", "merge", "shard-1", "shard-2", "-o", "merged"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
    )
    assert merged.returncode == 0, merged.stderr
    assert "merged: 8 items from 2 runs" in merged.stdout
    document = json.loads((pytester.path / "merged/results.json").read_text())
    assert sorted(r["case"] for r in document["results"]) == sorted(
        f"{name}-{n}" for name in ("birds", "foxes") for n in range(2) for _ in range(2)
    )
    for record in document["results"]:
        assert (pytester.path / "merged" / record["image"]).is_file()
    page = (pytester.path / "merged/report.html").read_text()
    assert page.count('<tr><td class="t2i-outcome-passed">') == 8
    assert 'href="images/birds.yaml/birds-0-seed0.png"' in page


def test_merge_errors_name_the_run(pytester: pytest.Pytester) -> None:
    pytester.mkdir("empty")
    (pytester.mkdir("broken") / "results.json").write_text("{not json")
    for run, message in (
        ("empty", "empty: no results.json here; give report dirs written by `pytest --t2i-report-dir`"),
        (
            "broken",
            "broken/results.json:1: not a readable results.json: not valid JSON (Expecting property name enclosed in "
            "double quotes)",
        ),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "harness", "merge", run, "-o", "out"],
            cwd=pytester.path,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert result.stderr == f"python -m harness merge: {message}\n"
        assert not (pytester.path / "out").exists()


def test_merge_ignores_image_paths_that_escape_the_run(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from harness.__main__ import main

    run = pytester.mkdir("run")
    # The secret is a real PNG, red; the run's own image is green. A leak would show as red in the output.
    Image.new("RGB", (8, 8), (255, 0, 0)).save(pytester.path / "secret.png")
    (run / "images").mkdir()
    Image.new("RGB", (8, 8), (0, 200, 0)).save(run / "images/own.png")

    def record(case: str, image: str) -> dict[str, object]:
        return {
            "id": f"a.yaml::{case}[seed=0]",
            "case": case,
            "file": "a.yaml",
            "line": 1,
            "seed": 0,
            "prompt": "p",
            "negative_prompt": None,
            "steps": 1,
            "guidance_scale": 7.5,
            "width": 8,
            "height": 8,
            "tags": [],
            "image": image,
            "outcome": "passed",
        }

    records = [record("escape", "../secret.png"), record("own", "images/own.png")]
    (run / "results.json").write_text(json.dumps({"results": records}))
    assert main(["merge", "run", "-o", "out"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        "python -m harness merge: refused: run/results.json: record 0 (id 'a.yaml::escape[seed=0]'): "
        "field 'image': '../secret.png' resolves outside the run dir; its image is left out"
    )
    merged = {r["case"]: r["image"] for r in json.loads((pytester.path / "out/results.json").read_text())["results"]}
    assert merged == {"escape": None, "own": "images/own.png"}
    secret = (pytester.path / "secret.png").read_bytes()
    assert secret.startswith(b"\x89PNG")  # the trap is a file merge would copy, were it inside the run
    files = {
        p.relative_to(pytester.path / "out").as_posix(): p.read_bytes() for p in (pytester.path / "out").rglob("*.png")
    }
    assert files == {"images/own.png": (run / "images/own.png").read_bytes()}
    page = (pytester.path / "out/report.html").read_text()
    colors = []
    for data in re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page):
        with Image.open(io.BytesIO(base64.b64decode(data))) as thumbnail:
            colors.append(thumbnail.convert("RGB").getpixel((0, 0)))
    assert len(colors) == 2  # the own image, in the table and in the grid: what a leaked one would look like
    assert all(green > 150 and red < 60 for red, green, _ in colors), colors
