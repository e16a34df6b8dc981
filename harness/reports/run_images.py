"""The one rule for showing, embedding or copying a record's image: a PNG file inside the run's own folder.

A record's ``image`` is a string from a results.json, which may come from anywhere. The report, the merged
report and the comparison all take the image through ``run_image``, which either returns the PNG's bytes
(checked to decode as a PNG) or says, in a phrase, why the image was refused.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A 2048 px RGBA PNG without any compression is 16 MiB; nothing the harness writes comes near this.
MAX_PNG_BYTES = 64 * 2**20


class ImageRefused(Exception):
    """Why a record's image is not used: a phrase such as "resolves outside the run dir"."""


@dataclass(frozen=True)
class RunImage:
    path: Path  # resolved: no symlink, inside the run dir
    data: bytes  # the file's bytes, exactly those that were checked
    pixels: Image  # decoded, RGB


def run_image(run_dir: Path, relative: str) -> RunImage:
    """The image ``relative`` names inside ``run_dir``, if it is safe to show; else ImageRefused."""
    if "\x00" in relative:
        raise ImageRefused("holds a NUL character")
    name = PurePosixPath(relative)
    if name.is_absolute() or Path(relative).is_absolute() or relative.startswith("~"):
        raise ImageRefused("is an absolute path; an image must be named relative to the run dir")
    if name.suffix.lower() != ".png":
        # A link to it opens it by its name: an .html "image" would be a page of its own.
        raise ImageRefused("is not a .png file name")
    root = run_dir.resolve()
    path = (root / relative).resolve()  # follows symlinks, so one pointing out of the run dir is caught
    if not path.is_relative_to(root):
        raise ImageRefused("resolves outside the run dir")
    data = _read_regular_file(path)
    if not data.startswith(PNG_SIGNATURE):
        raise ImageRefused("is not a PNG (the file does not start with the PNG signature)")
    return RunImage(path, data, _decode_png(data))


def _read_regular_file(path: Path) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the path was resolved just now.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ImageRefused("does not exist") from None
    except OSError as exc:
        raise ImageRefused(f"cannot be read ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageRefused("is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_PNG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PNG_BYTES:
        raise ImageRefused(f"is larger than {MAX_PNG_BYTES // 2**20} MiB")
    return data


def _decode_png(data: bytes) -> Image:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # A decompression bomb (a small file of billions of pixels) is refused, not decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as opened:
                return opened.convert("RGB")
    except Image.UnidentifiedImageError:
        raise ImageRefused("is not a PNG that decodes (damaged or truncated)") from None
    except Exception as exc:  # any failure to decode untrusted bytes is a refusal, whatever PIL raises
        raise ImageRefused(f"is not a PNG that decodes ({type(exc).__name__}: {exc})") from None
