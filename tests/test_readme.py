"""The README's case-file example is a valid case file (documentation that drifts is worse than none)."""

from __future__ import annotations

import re
from pathlib import Path

from harness.cases.case_file import load_case_file

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_case_file_example_parses(tmp_path: Path) -> None:
    block = re.search(r"## The case file\n\n```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block is not None
    path = tmp_path / "example.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    (case,) = load_case_file(path)
    assert case.id == "watercolor-owl" and case.seeds == (0, 1) and case.steps == 50
    assert (
        case.checks["clip"].min_prob == 0.5
        and case.checks.get("resnet") is not None
        and case.checks.get("resnet").expect == ("great grey owl",)
    )
    assert case.tags == ("animals", "style") and case.skip == "reason"
