"""Write files so that readers only ever see the old or the new content, never half of it."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

# Temp files of writes in progress. A name is added before its file is created and removed once the
# file is renamed or deleted, so a Ctrl-C landing anywhere in between leaves a name here, never an
# unknown file: remove_interrupted_writes() deletes what is left at the end of the session.
_IN_FLIGHT: set[Path] = set()
# A temp name carries the start of the target's name (for people looking at a folder mid-write) but
# never all of it: a 250-character file name plus the token would exceed the file system's 255.
_TEMP_NAME_PREFIX = 100


def atomic_write_bytes(path: Path, data: bytes, *, root: Path | None = None) -> None:
    """Replace ``path`` with ``data`` through a temp file and a rename.

    With ``root``, ``path`` must lie lexically under it, and every folder between them is created as a
    real folder: one that is a symlink (or a file) is replaced, never followed, so a link planted in
    the run's output folder cannot redirect a write elsewhere. The final name is replaced by the
    rename too, link or not.
    """
    path = Path(path)
    with _parent_dir(path, root) as parent_fd:
        tmp_name = f".{path.name[:_TEMP_NAME_PREFIX]}.{secrets.token_hex(8)}.tmp"
        tmp = path.parent / tmp_name
        _IN_FLIGHT.add(tmp)
        try:
            # O_EXCL: never write through a file (or a link) someone else put at this name.
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=parent_fd)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        except BaseException:
            # Covers KeyboardInterrupt too: never leave the temp file behind. Not in a `finally`: if a
            # second interrupt cuts the removal short, the name must stay registered for the sweep.
            _remove(tmp)
            _IN_FLIGHT.discard(tmp)
            raise
        _IN_FLIGHT.discard(tmp)


def atomic_write_text(path: Path, text: str, *, root: Path | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), root=root)


@contextlib.contextmanager
def _parent_dir(path: Path, root: Path | None) -> Iterator[int]:
    """An open file descriptor of ``path``'s folder, created as needed."""
    if root is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    else:
        fd = _real_dirs(Path(root), path.parent)
    try:
        yield fd
    finally:
        os.close(fd)


def _real_dirs(root: Path, folder: Path) -> int:
    """Open ``folder`` under ``root``, making each component below root a real directory."""
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        raise ValueError(f"refusing to write outside {root}: {folder}") from None
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"refusing a path with '.' or '..' components under {root}: {folder}")
    root.mkdir(parents=True, exist_ok=True)  # the root itself is the user's choice: links there are followed
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            child = _open_real_dir(fd, part)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_real_dir(parent_fd: int, name: str) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        # ELOOP: a symlink; ENOTDIR: a file (or a link to one). Either way it is not ours to follow.
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(name, dir_fd=parent_fd)
    try:
        os.mkdir(name, dir_fd=parent_fd)
    except FileExistsError:  # another process made it meanwhile
        pass
    return os.open(name, flags, dir_fd=parent_fd)


def remove_interrupted_writes() -> None:
    """Delete temp files that an interrupt left between their creation and their cleanup."""
    for tmp in list(_IN_FLIGHT):
        _remove(tmp)
        _IN_FLIGHT.discard(tmp)


def _remove(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except OSError:  # already gone, or its folder no longer writable: nothing more to clean
        pass
