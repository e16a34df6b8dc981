"""pytest-xdist scheduling that keeps all seeds of a case on one worker, so they share pipeline calls.

xdist's own `--dist loadgroup` relies on rewriting node ids, which pytest >= 9.1 no longer honours;
a scheduler that reads the case from the node id does not depend on that.
"""

from __future__ import annotations

import re
from typing import Any

# "<file>.yaml::<case id>[seed=<N>]" -> "<file>.yaml::<case id>"
_CASE_NODE_ID = re.compile(r"(?P<case>.+\.ya?ml::[A-Za-z0-9][A-Za-z0-9_.-]*)\[seed=\d+\]\Z")


def case_scope(nodeid: str) -> str | None:
    match = _CASE_NODE_ID.match(nodeid)
    return match.group("case") if match else None


def make_case_scheduler(config: Any, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class CaseScopeScheduling(LoadScopeScheduling):
        """Load scheduling by case for case items, by module (as --dist loadscope) for anything else."""

        def _split_scope(self, nodeid: str) -> str:
            return case_scope(nodeid) or super()._split_scope(nodeid)

    return CaseScopeScheduling(config, log)
