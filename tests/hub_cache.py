"""Lay out model directories as the Hugging Face cache holds downloaded repos, for offline tests."""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_hub_cache(hub_cache: Path, repo_id: str, model_dir: Path) -> Path:
    """Copy ``model_dir`` to where `hf download repo_id` would leave it under ``hub_cache``; the snapshot dir."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot
