"""results.json, rewritten after every item from records encoded once, has exactly json.dumps's bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.reports.results import FORMAT_VERSION, ResultsWriter, write_results

RECORDS: list[dict[str, Any]] = [
    {"id": "suite.yaml::owl[seed=0]", "clip": {"labels": ["an owl", "a hawk"], "probs": [0.9, 0.1]}, "tags": []},
    {"id": "suite.yaml::fox[seed=1]", "prompt": 'un renard à l\'aquarelle\n"quoted"', "resnet": None, "extra": {}},
    {"id": "suite.yaml::empty[seed=2]", "nested": [[1, 2.5, None, True], {"deep": {"deeper": ["x"]}}]},
]


@pytest.mark.parametrize("count", [0, 1, 3])
@pytest.mark.parametrize("environment", [{}, {"torch": "2.14.1", "t2i device": "cuda:0", "ünïcode": "ok"}])
def test_incremental_writes_equal_json_dumps(tmp_path: Path, count: int, environment: dict[str, str]) -> None:
    writer = ResultsWriter(tmp_path)
    for record in RECORDS[:count]:
        writer.add(record)
        writer.write(environment)  # as after each item
    path = writer.write(environment)
    # These records name no case file and case, so no case is summarised (tests/test_seed_rates.py checks cases).
    expected = {"version": FORMAT_VERSION, "environment": environment, "results": RECORDS[:count], "cases": []}
    assert path.read_text(encoding="utf-8") == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"


def test_write_results_writes_the_same_file(tmp_path: Path) -> None:
    path = write_results(tmp_path, RECORDS, {"torch": "2.14.1"})
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "version": FORMAT_VERSION,
        "environment": {"torch": "2.14.1"},
        "results": RECORDS,
        "cases": [],
    }
