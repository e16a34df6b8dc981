"""pytest-xdist scheduling that keeps all seeds of a case on one worker, so they share pipeline calls.

xdist's own `--dist loadgroup` relies on rewriting node ids, which pytest >= 9.2 no longer honours;
a scheduler that reads the case from the node id does not depend on that.
"""

from __future__ import annotations

from typing import Any

from harness.cases.item_id import case_scope

__all__ = ["case_scope", "make_case_scheduler"]


def make_case_scheduler(config: Any, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class CaseScopeScheduling(LoadScopeScheduling):
        """Load scheduling by case for case items, by module (as --dist loadscope) for anything else."""

        def _split_scope(self, nodeid: str) -> str:
            return case_scope(nodeid) or super()._split_scope(nodeid)

    return CaseScopeScheduling(config, log)
