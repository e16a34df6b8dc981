"""Write files so that readers only ever see the old or the new content, never half of it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# Temp files of writes in progress. A name is added before its file is created and removed once the
# file is renamed or deleted, so a Ctrl-C landing anywhere in between leaves a name here, never an
# unknown file: remove_interrupted_writes() deletes what is left at the end of the session.
_IN_FLIGHT: set[Path] = set()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    _IN_FLIGHT.add(tmp)
    try:
        # O_EXCL: never write through a file (or a link) someone else put at this name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Covers KeyboardInterrupt too: never leave the temp file behind. Not in a `finally`: if a
        # second interrupt cuts the removal short, the name must stay registered for the sweep.
        _remove(tmp)
        _IN_FLIGHT.discard(tmp)
        raise
    _IN_FLIGHT.discard(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_interrupted_writes() -> None:
    """Delete temp files that an interrupt left between their creation and their cleanup."""
    for tmp in list(_IN_FLIGHT):
        _remove(tmp)
        _IN_FLIGHT.discard(tmp)


def _remove(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
