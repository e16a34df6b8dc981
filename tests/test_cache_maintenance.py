"""`python -m harness cache`: counts, pruning by last use, and never touching files that are not entries."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.commands.cache_maintenance import SCORES_DIR, prune, scan
from harness.generation.image_cache import ImageCache
from harness.judging.score_cache import ScoreCache

DAY = 86400
JUDGE = "a" * 64


def filled_cache(root: Path, count: int = 3) -> list[Path]:
    """``count`` image entries with one score each; returns the image entries' paths."""
    images, scores = ImageCache(root), ScoreCache(root / SCORES_DIR)
    paths = []
    for n in range(count):
        key = f"{n:02x}" * 32
        paths.append(images.put(key, Image.new("RGB", (8, 8), (n, 0, 0)), {"seed": n}))
        scores.put(JUDGE, key, np.zeros(4, dtype=np.float32))
    return paths


def age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def test_scan_counts_entries_only(tmp_path: Path) -> None:
    filled_cache(tmp_path)
    (tmp_path / "README.txt").write_text("not an entry")
    report = scan(tmp_path)
    assert (report.images.files, report.scores.files) == (3, 3)
    assert report.images.bytes > 0 and report.oldest_use is not None


def test_prune_deletes_what_went_unused_and_nothing_else(tmp_path: Path) -> None:
    old, recent, _ = filled_cache(tmp_path)
    age(old, 40)
    scores = sorted((tmp_path / SCORES_DIR).rglob("*.f32"))
    age(scores[0], 40)
    foreign = [tmp_path / "README.txt", tmp_path / "ab" / "mine.png", tmp_path / SCORES_DIR / "notes.f32"]
    for path in foreign:
        path.parent.mkdir(exist_ok=True)
        path.write_text("keep me")
        age(path, 400)
    deleted = prune(tmp_path, 30)
    assert (deleted.images.files, deleted.scores.files) == (1, 1)
    assert not old.exists() and recent.exists() and not scores[0].exists()
    assert all(path.exists() for path in foreign)
    assert (scan(tmp_path).images.files, scan(tmp_path).scores.files) == (2, 2)


def test_a_cache_hit_counts_as_a_use(tmp_path: Path) -> None:
    (entry,) = filled_cache(tmp_path, count=1)
    age(entry, 40)
    assert ImageCache(tmp_path).get("00" * 32) is not None
    assert prune(tmp_path, 30).images.files == 0
    score = next((tmp_path / SCORES_DIR).rglob("*.f32"))
    age(score, 40)
    assert ScoreCache(tmp_path / SCORES_DIR).get(JUDGE, "00" * 32, 4) is not None
    assert prune(tmp_path, 30).scores.files == 0


def test_temp_files_of_killed_writes_go_after_a_day(tmp_path: Path) -> None:
    (entry,) = filled_cache(tmp_path, count=1)
    stale = entry.parent / f".{entry.name}.{'1' * 16}.tmp"
    fresh = entry.parent / f".{entry.name}.{'2' * 16}.tmp"
    for path, days in ((stale, 2), (fresh, 0)):
        path.write_bytes(b"half a png")
        age(path, days)
    assert prune(tmp_path, 30).temp_files.files == 1
    assert not stale.exists() and fresh.exists() and entry.exists()


def harness_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "cache", *args], cwd=cwd, capture_output=True, text=True)


def test_command_line(tmp_path: Path) -> None:
    old, _, _ = filled_cache(tmp_path / "cache")
    age(old, 40)
    shown = harness_cli("cache", cwd=tmp_path)
    assert shown.returncode == 0
    assert shown.stdout.startswith("cache: 3 images (")
    assert ", 3 scores (" in shown.stdout and "least recently used: " in shown.stdout
    pruned = harness_cli("cache", "--prune-unused-days", "30", cwd=tmp_path)
    assert pruned.returncode == 0
    assert pruned.stdout.splitlines()[0].startswith("cache: deleted 1 image (")
    assert "and 0 scores (0.0 MiB) unused for more than 30 days" in pruned.stdout
    assert pruned.stdout.splitlines()[1].startswith("cache: 2 images (")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "python -m harness cache: .pytest_cache/d/t2i-images is not a directory. Pass the image cache"),
        (["cache", "--prune-unused-days", "soon"], "argument --prune-unused-days: must be a number of days"),
    ],
)
def test_command_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "cache").mkdir()
    done = harness_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
