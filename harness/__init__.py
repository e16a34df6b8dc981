"""t2i-harness: regression tests for text-to-image prompts, as a pytest plugin."""

from __future__ import annotations

from harness.cases.case_file import Case, CaseFileError, load_case_file
from harness.judging.clip import ClipCheck, ClipScorer
from harness.judging.judge import Judge, Score, Table, TableRow, Verdict
from harness.judging.resnet import ImagenetClassifier, ResnetCheck

__version__ = "0.1.0"

__all__ = [
    "Case",
    "CaseFileError",
    "ClipCheck",
    "ClipScorer",
    "ImagenetClassifier",
    "Judge",
    "ResnetCheck",
    "Score",
    "Table",
    "TableRow",
    "Verdict",
    "__version__",
    "load_case_file",
]
