"""The run's output folder: images and results.json written atomically, never through a planted link.

A folder that cannot be written (a full disk, a read-only mount) is one clear error for the run, not a
traceback per item: the first failure is kept as ``problem``, and later writes are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.common.atomic import atomic_write_bytes

_PROBE = ".t2i-write-check"


class ReportDir:
    def __init__(self, root: Path, option: str = "--t2i-report-dir") -> None:
        self.root = Path(root)
        self.option = option
        self.problem: str | None = None  # why the folder could not be written, once it could not

    def write(self, path: Path, data: bytes) -> bool:
        """Replace ``path`` (under the root) with ``data``; False once the folder cannot be written."""
        if self.problem is not None:
            return False
        try:
            atomic_write_bytes(path, data, root=self.root)
        except OSError as exc:
            self.failed(exc, path)
            return False
        return True

    def failed(self, exc: OSError, path: Path) -> None:
        """Record a write that failed (the first is the one explained), e.g. pytest-html's report.html."""
        if self.problem is None:
            self.problem = self._explain(exc, path)

    def check_writable(self) -> str | None:
        """Why the folder cannot be written, or None: checked before any item runs."""
        probe = self.root / _PROBE
        try:
            atomic_write_bytes(probe, b"", root=self.root)
            os.unlink(probe)
        except OSError as exc:
            return self._explain(exc, probe)
        return None

    def _explain(self, exc: OSError, path: Path) -> str:
        what = exc.strerror or str(exc)
        return (
            f"the report dir {self.root} ({self.option}) cannot be written: {what} (writing {path}). "
            "results.json, the images and report.html there are missing or incomplete; the verdicts in the "
            f"terminal are complete. Fix: free space there, or point {self.option} at a writable directory."
        )
