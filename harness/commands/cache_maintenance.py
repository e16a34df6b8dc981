"""`python -m harness cache`: what the image and score caches hold, and pruning entries unused for a while.

Hits refresh an entry's modification time, so "unused for N days" means neither written nor read in that
time. Only files named as the caches name them are counted or deleted: pointing the command at the wrong
directory deletes nothing of anyone else's.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.generation.image_cache import SCORES_DIR

DEFAULT_CACHE_DIR = Path(".pytest_cache/d/t2i-images")  # pytest's cache dir, relative to the rootdir

_IMAGE_ENTRY = re.compile(r"([0-9a-f]{2})/\1[0-9a-f]{62}\.png\Z")
_SCORE_ENTRY = re.compile(rf"{SCORES_DIR}/([0-9a-f]{{2}})/\1[0-9a-f]{{62}}\.f32\Z")
# Temp files of writes that a kill -9 cut short (see harness.common.atomic); a day is far longer than any write.
_TEMP_FILE = re.compile(r"(scores/)?[0-9a-f]{2}/\.[0-9a-f]{64}\.(png|f32)\.[0-9a-f]{16}\.tmp\Z")
_TEMP_GRACE_S = 24 * 3600


class CacheDirError(Exception):
    """The directory is not a cache; the message says what to pass instead."""


@dataclass
class Tally:
    files: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.files += 1
        self.bytes += size


@dataclass
class CacheReport:
    images: Tally = field(default_factory=Tally)
    scores: Tally = field(default_factory=Tally)
    temp_files: Tally = field(default_factory=Tally)
    oldest_use: float | None = None  # seconds since the epoch


def scan(root: Path) -> CacheReport:
    return _walk(root, None, time.time())


def prune(root: Path, unused_days: float, now: float | None = None) -> CacheReport:
    """Delete entries unused for more than ``unused_days`` days; returns what was deleted."""
    if unused_days < 0:
        raise ValueError("unused_days must be >= 0")
    return _walk(root, unused_days * 86400, time.time() if now is None else now)


def _walk(root: Path, max_age_s: float | None, now: float) -> CacheReport:
    root = Path(root)
    if not root.is_dir():
        raise CacheDirError(
            f"{root} is not a directory. Pass the image cache directory: the --t2i-cache-dir of your runs, or "
            f"{DEFAULT_CACHE_DIR} under the pytest rootdir (the default, used when you run this there)."
        )
    report = CacheReport()
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if not os.path.islink(os.path.join(folder, name))]
        for name in filenames:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            tally = _tally_for(report, relative)
            if tally is None:
                continue
            try:
                stat = path.lstat()
            except OSError:
                continue  # removed meanwhile by another run
            if max_age_s is None:  # scanning
                tally.add(stat.st_size)
                if tally is not report.temp_files:
                    report.oldest_use = min(report.oldest_use or stat.st_mtime, stat.st_mtime)
                continue
            # Pruning: a temp file by its own grace period, an entry by the given one.
            limit = _TEMP_GRACE_S if tally is report.temp_files else max_age_s
            if now - stat.st_mtime > limit:
                _unlink(path, stat.st_size, tally)
    return report


def _tally_for(report: CacheReport, relative: str) -> Tally | None:
    if _IMAGE_ENTRY.match(relative):
        return report.images
    if _SCORE_ENTRY.match(relative):
        return report.scores
    if _TEMP_FILE.match(relative):
        return report.temp_files
    return None


def _unlink(path: Path, size: int, tally: Tally) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    tally.add(size)
