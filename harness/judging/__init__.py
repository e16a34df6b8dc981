"""Judges: the checks a case declares. The interface for writing one is harness.judging.judge (README: "Write
your own judge"); what a judge's parse() reads its section through is harness.cases.case_file.SectionReader."""

from harness.cases.case_file import Problem, SectionReader
from harness.judging.judge import Judge, Score, Table, TableRow, Verdict

__all__ = ["Judge", "Problem", "Score", "SectionReader", "Table", "TableRow", "Verdict"]
