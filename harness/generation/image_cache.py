"""An on-disk cache of generated images, keyed by everything that decides their pixels.

Each entry is one PNG, root/<first two hex digits>/<key>.png, whose text chunks record the key and
a sha256 of the decoded pixels; a read checks both, so a damaged entry is never handed out for scoring.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.common.atomic import atomic_write_bytes
from harness.common.names import SHA256_HEX

if TYPE_CHECKING:
    from PIL import Image

    from harness.generation.generate import GenerationRequest

# Part of every key: bump it when what goes into a key changes, so that old entries stop matching.
KEY_FORMAT = 1
ENTRY_FORMAT = "1"
MODE = "RGB"  # the harness generates 8-bit RGB; nothing else is stored, so nothing else can come back

# PNG text-chunk names (tEXt keywords: Latin-1, at most 79 characters).
CHUNK_FORMAT = "t2i-cache-format"
CHUNK_KEY = "t2i-cache-key"
CHUNK_PIXELS = "t2i-pixels-sha256"
CHUNK_META = "t2i-meta"

_KEY_PATTERN = SHA256_HEX
# Every complete PNG ends with this empty IEND chunk and its CRC; decoders tolerate files cut
# after the last pixel row, the cache does not.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


# Inside the image cache dir, next to the images' two-hex-digit folders, so the names never meet.
SCORES_DIR = "scores"


def touch(path: Path) -> None:
    """Mark a cache entry as used now (`python -m harness cache --prune-unused-days` reads it); a read-only
    cache (a shared volume) is used as it is."""
    try:
        os.utime(path)
    except OSError:
        pass


def cache_key(fingerprint: dict[str, str], request: GenerationRequest) -> str:
    """sha256 hex of the model fingerprint and the request, as canonical JSON.

    Only these two go in: a case's labels, check thresholds, tags and id do not decide pixels, so
    editing them reuses the cached images. Every field of the request goes in, including any added
    later, so a new generation parameter can never be silently left out of the key.
    """
    fields = dataclasses.asdict(request)
    # YAML may give 7 or 7.0 for the same guidance, and both guide identically.
    fields["guidance_scale"] = float(fields["guidance_scale"])
    return json_digest({"format": KEY_FORMAT, "model": dict(fingerprint), "request": fields})


def json_digest(payload: dict[str, Any]) -> str:
    """sha256 hex of ``payload`` as canonical JSON (sorted keys, no spaces, UTF-8): a cache key."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ImageCache:
    """Generated images under ``root``, safe to share between processes and machines.

    Writes are atomic (temp file in the entry's folder, then rename), so concurrent readers and
    writers of one key see a whole old entry, a whole new one, or none; duplicate writers of a key
    write the same pixels, so whichever rename lands last is as good as the other.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.write_error: str | None = None  # set by the first write that failed; later puts are skipped

    def path_for(self, key: str) -> Path:
        """Where the entry for ``key`` lives; sharded so no folder holds more than 1/256 of the cache."""
        # Keys become file names, so anything but a sha256 hex digest could escape the root.
        if not isinstance(key, str) or not _KEY_PATTERN.match(key):
            raise ValueError(f"not a cache key (64 lowercase hex digits): {key!r}")
        return self.root / key[:2] / f"{key}.png"

    def get(self, key: str) -> Image.Image | None:
        """The cached image for ``key``, or None on a miss.

        A truncated, corrupt or foreign entry is also a miss: it is deleted, so the caller
        regenerates it, and the error is never raised.
        """
        found = self._read(key)
        return None if found is None else found[1]

    def _read(self, key: str) -> tuple[bytes, Image.Image] | None:
        """The entry's bytes and its verified image, counted as a use; a damaged entry is deleted (a miss)."""
        path = self.path_for(key)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
                identity = _identity(os.fstat(handle.fileno()))
        except OSError:
            # Missing, or unreadable here (permissions on a shared volume): regenerate either way.
            return None
        image = _verified_image(data, key)
        if image is None:
            _discard(path, identity)
            return None
        touch(path)  # for `python -m harness cache --prune-unused-days`
        return data, image

    def peek(self, key: str) -> Image.Image | None:
        """The cached image for ``key`` if there is a sound one, changing nothing on disk (for review pages, which
        show cached images and must not count as a use, nor delete what they cannot read)."""
        try:
            data = self.path_for(key).read_bytes()
        except OSError:
            return None
        return _verified_image(data, key)

    def entry_bytes(self, key: str) -> bytes | None:
        """The entry for ``key`` as stored (a PNG with its text chunks), verified as ``get`` verifies; None on a
        miss. For handing an entry to another machine (a Ray actor), which verifies it again with ``put_entry``."""
        found = self._read(key)
        return None if found is None else found[0]

    def put_entry(self, key: str, data: bytes) -> bool:
        """Store an entry made by another cache (``entry_bytes``, or a Ray actor's ``put``) after verifying it as a
        read does: a damaged or foreign one is refused (False), never stored."""
        if self.write_error is not None or _verified_image(data, key) is None:
            return False
        try:
            atomic_write_bytes(self.path_for(key), data)
        except OSError as exc:
            self.write_error = unwritable_cache_message(self.root, exc)
            return False
        return True

    def put(self, key: str, image: Image.Image, meta: dict[str, Any]) -> Path | None:
        """Store ``image`` (8-bit RGB) under ``key``, replacing any entry, and return its path.

        ``meta`` (JSON-serializable) is kept in the PNG for people inspecting the cache, e.g. the
        prompt and seed; reads never depend on it. A cache that cannot be written (read-only or full)
        is not an error of the item: ``write_error`` says why, and the run goes on storing nothing.
        """
        if self.write_error is not None:
            return None
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        path = self.path_for(key)
        if image.mode != MODE:
            raise ValueError(f"the image cache stores {MODE} images only, got mode {image.mode!r}")
        raw = image.tobytes()
        info = PngInfo()
        info.add_text(CHUNK_FORMAT, ENTRY_FORMAT)
        info.add_text(CHUNK_KEY, key)
        info.add_text(CHUNK_PIXELS, pixel_digest(image.size, raw))
        # ASCII JSON keeps the chunk a plain tEXt whatever the prompt's script.
        info.add_text(CHUNK_META, json.dumps(meta, sort_keys=True, ensure_ascii=True))
        buffer = io.BytesIO()
        # Saved from the raw pixels so nothing but them and the chunks above (no ICC profile or
        # other metadata the source image carried) ends up in the entry.
        Image.frombytes(MODE, image.size, raw).save(buffer, format="PNG", pnginfo=info)
        try:
            atomic_write_bytes(path, buffer.getvalue())
        except OSError as exc:
            self.write_error = unwritable_cache_message(self.root, exc)
            return None
        return path


def unwritable_cache_message(root: Path, exc: OSError) -> str:
    return (
        f"t2i: the cache {root} cannot be written ({exc.strerror or exc}); the run goes on without storing "
        "new images or scores (entries already there are still read). Fix: make it writable or free space, or "
        "pass --t2i-no-cache or another --t2i-cache-dir."
    )


def pixel_digest(size: tuple[int, int], raw: bytes) -> str:
    # The size is hashed with the bytes: a 32x64 and a 64x32 image can share their bytes.
    width, height = size
    return hashlib.sha256(f"{MODE} {width}x{height}\n".encode() + raw).hexdigest()


def _verified_image(data: bytes, key: str) -> Image.Image | None:
    """The entry's image if it is complete, belongs to ``key`` and its pixels match their digest."""
    from PIL import Image

    if not data.endswith(_PNG_END):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as png:
            png.load()
            text = dict(png.text)  # type: ignore[attr-defined]
            mode, size, raw = png.mode, png.size, png.tobytes()
    except Exception:
        # Pillow reports damaged data as OSError, SyntaxError, ValueError, EOFError or zlib.error,
        # depending on where the damage is; all of them mean "regenerate".
        return None
    if text.get(CHUNK_FORMAT) != ENTRY_FORMAT or text.get(CHUNK_KEY) != key or mode != MODE:
        return None
    if text.get(CHUNK_PIXELS) != pixel_digest(size, raw):
        return None
    # A fresh image of exactly the verified bytes, detached from the file and its metadata.
    return Image.frombytes(MODE, size, raw)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _discard(path: Path, identity: tuple[int, int]) -> None:
    """Delete a bad entry, unless another process has meanwhile replaced it with a good one."""
    try:
        if _identity(os.stat(path)) == identity:
            os.unlink(path)
    except OSError:
        # Already gone, or a read-only cache: a miss either way, and put() replaces it.
        pass
