"""The heap is frozen at exit (CPython's final collections skip it), after garbage is collected.

Only in runs that used the harness: the others never import torch, so their exit is quick anyway.
"""

from __future__ import annotations

import pytest

# atexit runs handlers last-in first-out. The print is registered while conftest.py is imported, before the
# plugin's pytest_configure, so it runs after the plugin's handler and sees what it did.
CONFTEST = """
import atexit, gc, pathlib

class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        pathlib.Path("finalized").write_text("yes")

def pytest_unconfigure():
    # Registered after the plugin's handler, so it runs before it: garbage made at exit that only the
    # cyclic collector can free.
    atexit.register(Cycle)

atexit.register(lambda: print("frozen objects at exit:", gc.get_freeze_count()))
"""


def test_exit_freezes_the_heap_after_finalizing_garbage(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_plain="def test_settings(t2i_settings): pass")  # resolving them imports torch
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    frozen = int(result.stdout.lines[-1].rpartition(":")[2])
    assert frozen > 100_000  # torch and friends alone leave several hundred thousand objects
    assert (pytester.path / "finalized").read_text() == "yes"


def test_a_run_that_never_uses_the_harness_imports_no_torch_and_freezes_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST + "\nimport sys\natexit.register(lambda: print('torch:', 'torch' in sys.modules))\n")
    pytester.makepyfile(test_plain="def test_nothing(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--t2i-device=cuda:7")  # never checked
    result.assert_outcomes(passed=1)
    assert result.stdout.lines[-2:] == ["torch: False", "frozen objects at exit: 0"]
    assert "t2i:" not in result.stdout.str()  # no settings lines either
