"""Ctrl-C mid-run leaves reports/ consistent: valid files describing the finished items, no temp files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import Labels, case_yaml


def test_ctrl_c_leaves_valid_report_and_results(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    body = "".join(
        f"""
        - id: case-{n}
          prompt: "{clip_labels.prompt}"
          clip: {clip_labels.passing}
        """
        for n in range(40)
    )
    pytester.makefile(".yaml", suite=case_yaml(body, steps=4))  # enough that 40 cases outlast the Ctrl-C
    results = pytester.path / "reports/results.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # Python leaves SIGINT ignored when it starts ignored (a suite launched in the background
            # without job control): install the handler that raises KeyboardInterrupt regardless.
            "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.exit(pytest.console_main())",
            "suite.yaml",
            "--html=reports/report.html",
            "--self-contained-html",
            *model_args,
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not results.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    output = process.communicate(timeout=120)[0].decode()
    assert "KeyboardInterrupt" in output, output[-2000:]

    finished = json.loads(results.read_text())["results"]
    assert 1 <= len(finished) < 40
    assert all(record["outcome"] in ("passed", "failed") for record in finished)
    for record in finished:
        assert (pytester.path / "reports" / record["image"]).is_file()
    html = (pytester.path / "reports/report.html").read_text()
    assert html.rstrip().endswith("</html>")
    # ... and it describes exactly the items that finished: their rows and the summary's counts.
    passed = sum(record["outcome"] == "passed" for record in finished)
    assert f'data-passed="{passed}" data-run="{len(finished)}" data-total="{len(finished)}"' in html
    # pytest-html adds a row when it receives the item's report, after the harness has recorded it: a
    # Ctrl-C landing between the two leaves that one item out of the table (never out of the summary).
    for record in finished[:-1]:
        assert record["id"].split("::")[1] in html
    leftovers = [p.name for p in (pytester.path / "reports").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
