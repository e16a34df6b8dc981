"""t2i-harness: regression tests for text-to-image prompts, as a pytest plugin."""

from __future__ import annotations

from harness.cases import Case, CaseFileError, ClipCheck, ResnetCheck, load_case_file
from harness.scoring import ClipScorer, ImagenetClassifier

__version__ = "0.1.0"

__all__ = [
    "Case",
    "CaseFileError",
    "ClipCheck",
    "ClipScorer",
    "ImagenetClassifier",
    "ResnetCheck",
    "__version__",
    "load_case_file",
]
