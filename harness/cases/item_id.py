"""How an item (one case at one seed) is named: in node ids, baselines, `-k` and xdist's scheduling."""

from __future__ import annotations

import re

# "<file>.yaml::<case id>[seed=<N>]"
_CASE_NODE_ID = re.compile(r"(?P<case>.+\.ya?ml::[A-Za-z0-9][A-Za-z0-9_.-]*)\[seed=\d+\]\Z")


def seed_param(seed: int) -> str:
    """The item's parameter, as pytest shows a parametrized test's: "seed=3"."""
    return f"seed={seed}"


def item_name(case_id: str, seed: int) -> str:
    """The item's name in its file: "owl[seed=3]" (also its key in a baseline file)."""
    return f"{case_id}[{seed_param(seed)}]"


def seed_keyword(seed: int) -> str:
    """The `-k` word that selects one seed: `pytest cases/ -k "owl and [seed1]"`.

    `-k` cannot parse "seed=1" ('=' is not part of its words) and matches substrings, so "seed1" would also
    select seed 10: "[seed1]" is exact and valid in a -k expression.
    """
    return f"[seed{seed}]"


def case_scope(nodeid: str) -> str | None:
    """A case item's node id without its seed ("cases/a.yaml::owl"); None for any other test."""
    match = _CASE_NODE_ID.match(nodeid)
    return match.group("case") if match else None
