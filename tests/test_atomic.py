"""Atomic writes: readers see the old file or the new one, and an interrupt leaves no temp file behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness.common import atomic
from harness.common.atomic import atomic_write_bytes, remove_interrupted_writes


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "results.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]
    # Reports are shared: the umask decides, not the 0600 of a private temp file.
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def test_an_interrupt_mid_write_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    atomic_write_bytes(target, b"old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_an_interrupt_during_cleanup_is_swept_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The second Ctrl-C lands while the temp file of the first is being removed: the name was
    # registered before the file existed, so the end-of-session sweep still finds it.
    target = tmp_path / "results.json"
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt))
    real_remove = atomic._remove
    monkeypatch.setattr(atomic, "_remove", lambda tmp: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert [p.name.endswith(".tmp") for p in tmp_path.iterdir()] == [True]
    monkeypatch.setattr(atomic, "_remove", real_remove)
    remove_interrupted_writes()
    assert list(tmp_path.iterdir()) == []


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
