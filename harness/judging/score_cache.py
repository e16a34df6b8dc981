"""Judge outputs already computed, keyed by the judge and the image's pixels.

A re-run after editing a check (labels, thresholds, top_k) shows the same images to the same judges, so it
should not run their models again: on 2 CPU cores, one image model alone was 28 s of a 33 s warm run of 400
images. Each entry holds one judge's float32 row for one image (harness.judging.judge.Judge.features), after a
header naming the judge and the image digest it was computed from, and followed by a sha256 of both: a damaged
entry, or one moved to another entry's name, is recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.common.atomic import atomic_write_bytes
from harness.common.names import SHA256_HEX
from harness.generation.image_cache import json_digest, pixel_digest, touch, unwritable_cache_message

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Part of every key: bump it when what goes into a key or an entry changes.
KEY_FORMAT = 2
_DIGEST_BYTES = 32
_KEY_PATTERN = SHA256_HEX


def judge_digest(identity: dict[str, str]) -> str:
    """sha256 hex of a judge's identity (model, weights, preprocessing, dtype, device, library versions)."""
    return json_digest(identity)


def pretrained_identity(
    judge: str, ref: str, revision: str, dtype: Any, device: str, **extra: str
) -> dict[str, str] | None:
    """A judge's cache identity for a transformers model: what it computes, the weights (a hub commit, or a local
    dir's content), dtype, device type and library versions, plus ``extra`` (preprocessing, prompt formats).

    None when a hub model's commit cannot be read from the local cache: no safe key, so its rows are not cached.
    """
    from harness.common.versions import package_version
    from harness.generation.fingerprint import model_identity

    source, resolved = model_identity(ref, revision)
    if resolved == "unknown":
        return None
    return {
        "judge": judge,
        "model": source,
        "revision": resolved,
        "dtype": str(dtype),
        # cpu, cuda and mps kernels round differently; two GPUs of one type are interchangeable.
        "device": device.split(":")[0],
        "transformers": package_version("transformers"),
        "torch": package_version("torch"),
        **extra,
    }


def image_digest(image: Image.Image) -> str:
    """The pixels' sha256, as the image cache computes it (8-bit RGB)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return pixel_digest(rgb.size, rgb.tobytes())


class ScoreCache:
    """Vectors under ``root``, root/<first two hex digits>/<key>.f32; atomic writes, as the image cache.

    An entry is a one-line JSON header (format, judge, image digest, length), the float32 vector, and
    a sha256 of both; a read checks all of them against what was asked for.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.write_error: str | None = None  # set by the first write that failed; later puts are skipped

    def path_for(self, judge: str, image: str) -> Path:
        for digest in (judge, image):
            if not isinstance(digest, str) or not _KEY_PATTERN.match(digest):
                raise ValueError(f"not a sha256 hex digest: {digest!r}")
        key = hashlib.sha256(f"{KEY_FORMAT}\0{judge}\0{image}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.f32"

    def get(self, judge: str, image: str, length: int) -> np.ndarray | None:
        """The stored vector, or None when missing, damaged, of another length or another entry's."""
        import numpy as np

        path = self.path_for(judge, image)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        payload, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
        if hashlib.sha256(payload).digest() != digest:
            return None
        header, _, vector_bytes = payload.partition(b"\n")
        if header != _header(judge, image, length) or len(vector_bytes) != 4 * length:
            return None
        vector = np.frombuffer(vector_bytes, dtype="<f4").copy()
        if not np.isfinite(vector).all():
            return None
        touch(path)  # for `python -m harness cache --prune-unused-days`
        return vector

    def put(self, judge: str, image: str, vector: Any) -> None:
        import numpy as np

        if self.write_error is not None:
            return
        values = np.ascontiguousarray(vector, dtype="<f4")
        payload = _header(judge, image, values.size) + b"\n" + values.tobytes()
        try:
            atomic_write_bytes(self.path_for(judge, image), payload + hashlib.sha256(payload).digest())
        except OSError as exc:
            self.write_error = unwritable_cache_message(self.root, exc)


def _header(judge: str, image: str, length: int) -> bytes:
    fields = {"format": KEY_FORMAT, "judge": judge, "image": image, "length": length}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")
