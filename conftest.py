"""Settings for this repository's own example suite (`pytest cases/`).

The plugin itself needs no conftest.py: it is registered by the package's pytest11 entry point.
This file only keeps a bare `pytest` at the repository root to the example suite.
"""

# tests/ has its own pytest.ini (run it as `pytest tests/`); benchmarks/ and the output folders hold no tests.
collect_ignore = ["tests", "benchmarks", "reports", "baselines"]
