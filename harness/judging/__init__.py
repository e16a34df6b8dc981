"""Judges: the checks a case declares. The public interface for writing one is in harness.judging.judge."""

from harness.judging.judge import Judge, Score, Table, TableRow, Verdict

__all__ = ["Judge", "Score", "Table", "TableRow", "Verdict"]
