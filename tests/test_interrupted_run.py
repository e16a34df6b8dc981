"""Ctrl-C mid-run leaves reports/ consistent: valid files describing the finished items, no temp files."""

from __future__ import annotations

import _thread
import json
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import Labels, case_yaml


def run_interrupted_after_first_item(pytester: pytest.Pytester, results: Path, *args: str) -> pytest.RunResult:
    """Run pytest in process and press Ctrl-C once ``results`` (the run's results.json) exists: after its first item."""
    stop_watching = threading.Event()

    def press_ctrl_c_after_the_first_item() -> None:
        deadline = time.monotonic() + 120
        while not results.exists() and time.monotonic() < deadline and not stop_watching.is_set():
            time.sleep(0.05)
        if not stop_watching.is_set():
            # What Ctrl-C does: SIGINT's handler raises KeyboardInterrupt in the main thread, wherever it is
            # (deep in a pipeline call, or waiting for a Ray batch). In process: a subprocess would spend 10 s
            # importing torch.
            _thread.interrupt_main(signal.SIGINT)

    # Python's own handler, whatever this worker process was started with (a background job ignores SIGINT).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=press_ctrl_c_after_the_first_item, daemon=True)
    watcher.start()
    try:
        return pytester.runpytest(*args, no_reraise_ctrlc=True)
    except KeyboardInterrupt:  # landed outside the inner session: say so, rather than stop this suite
        pytest.fail("the Ctrl-C reached the test itself, not the run under test")
    finally:
        stop_watching.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)


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
    result = run_interrupted_after_first_item(
        pytester, results, "suite.yaml", "--html=reports/report.html", "--self-contained-html", *model_args
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    output = result.stdout.str()
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
