"""Several workers (pytest-xdist, on CPU here) and several machines (shards merged into one report)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import Labels, case_yaml
from harness.xdist_scheduling import case_scope


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
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    two_files(pytester, clip_labels)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-v", "--html=reports/report.html", "--self-contained-html", "--t2i-no-cache", *model_args
    )
    result.assert_outcomes(passed=8)
    workers: dict[str, set[str]] = {}
    for worker, case in re.findall(r"\[(gw\d)\] .*PASSED \S+::(\S+)\[seed=\d\]", result.stdout.str()):
        workers.setdefault(case, set()).add(worker)
    assert len(workers) == 4 and all(len(w) == 1 for w in workers.values()), workers  # seeds stay together
    assert len({w for ws in workers.values() for w in ws}) == 2  # both workers did work

    document = json.loads((pytester.path / "reports/results.json").read_text())
    assert len(document["results"]) == 8
    assert {r["outcome"] for r in document["results"]} == {"passed"}
    assert all((pytester.path / "reports" / r["image"]).is_file() for r in document["results"])
    assert document["environment"]["t2i pipeline"].endswith("sd-pipeline @ local dir")
    html = (pytester.path / "reports/report.html").read_text()
    assert html.count("data:image/jpeg;base64,") >= 8
    assert "sd-pipeline @ local dir" in html


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
    for run, message in (("empty", "empty: no results.json here"), ("broken", "broken/results.json:1: not valid JSON")):
        result = subprocess.run(
            [sys.executable, "-m", "harness", "merge", run, "-o", "out"],
            cwd=pytester.path,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert f"python -m harness merge: {message}" in result.stderr
        assert "Traceback" not in result.stderr


def test_merge_ignores_image_paths_that_escape_the_run(pytester: pytest.Pytester) -> None:
    run = pytester.mkdir("run")
    (pytester.path / "secret.png").write_bytes(b"not for the report")
    record = {
        "id": "a.yaml::x[seed=0]",
        "case": "x",
        "file": "a.yaml",
        "seed": 0,
        "prompt": "p",
        "negative_prompt": None,
        "steps": 1,
        "guidance_scale": 7.5,
        "width": 8,
        "height": 8,
        "image": "../secret.png",
        "outcome": "passed",
    }
    (run / "results.json").write_text(json.dumps({"results": [record]}))
    subprocess.run([sys.executable, "-m", "harness", "merge", "run", "-o", "out"], cwd=pytester.path, check=True)
    assert json.loads((pytester.path / "out/results.json").read_text())["results"][0]["image"] is None
    assert not (pytester.path / "secret.png").read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in (pytester.path / "out").rglob("*.png")] == []
