"""One judge's rows for a batch of images: from the score cache where it has them, the rest in one forward.

A forward that fails is retried image by image, so that an error belongs to the image that caused it and
the other images of the batch are still scored.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.common.errors import describe_error

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from harness.judging.judge import Judge
    from harness.judging.score_cache import ScoreCache


@dataclass(frozen=True)
class ToScore:
    token: Hashable  # how the caller knows the image again
    image: Image.Image
    digest: Callable[[], str]  # the pixels' sha256 (computed once, shared between judges)
    query: Any = None  # what of the case's check the judge's rows depend on (Judge.query), or None


def score_rows(
    judge: Judge[Any, Any],
    model: Any,
    cache_name: str | None,
    batch: Sequence[ToScore],
    cache: ScoreCache | None,
    refresh: bool,
) -> tuple[dict[Hashable, np.ndarray], dict[Hashable, str]]:
    """(rows, errors) by token: a float32 row per image, or why the judge could not compute it."""

    rows: dict[Hashable, np.ndarray] = {}
    # Where each item's row is kept: (the cache's judge key, the row's length), or None when it is not cached.
    entries: dict[Hashable, tuple[str, int] | None] = {}
    if cache is not None and cache_name is not None:
        for item in batch:
            entries[item.token] = _entry(judge, model, cache_name, item.query)
    if cache is not None and not refresh:
        for item in batch:
            entry = entries.get(item.token)
            vector = cache.get(entry[0], item.digest(), entry[1]) if entry is not None else None
            if vector is not None:
                rows[item.token] = vector
    missing = [item for item in batch if item.token not in rows]
    errors: dict[Hashable, str] = {}
    computed = _isolated(judge, model, missing, errors)
    for item in missing:
        row = computed.get(item.token)
        if row is None:
            continue
        rows[item.token] = row
        entry = entries.get(item.token)
        if cache is not None and entry is not None:
            cache.put(entry[0], item.digest(), row)
    return rows, errors


def _entry(judge: Judge[Any, Any], model: Any, cache_name: str, query: Any) -> tuple[str, int] | None:
    """The score cache's key for a judge's row (with its query, when it has one) and the row's length."""
    if not judge.has_query:
        length = judge.feature_length(model)
        return None if length is None else (cache_name, length)
    length = judge.feature_length(model, query)  # type: ignore[call-arg]
    if length is None:
        return None
    from harness.generation.image_cache import json_digest

    return json_digest({"judge": cache_name, "query": query}), length


def _isolated(
    judge: Judge[Any, Any], model: Any, batch: list[ToScore], errors: dict[Hashable, str]
) -> dict[Hashable, np.ndarray]:
    if not batch:
        return {}
    try:
        images = [item.image for item in batch]
        if judge.has_query:
            output = _as_rows(judge.features(model, images, [item.query for item in batch]))  # type: ignore[call-arg]
        else:
            output = _as_rows(judge.features(model, images))
        if len(output) != len(batch):
            raise ValueError(f"features() returned {len(output)} rows for {len(batch)} images")
        return {item.token: row for item, row in zip(batch, output, strict=True)}
    except Exception as exc:
        if len(batch) == 1:
            errors[batch[0].token] = f"{judge.title} could not score this image: {describe_error(exc)}"
            return {}
    rows: dict[Hashable, np.ndarray] = {}
    for item in batch:
        rows.update(_isolated(judge, model, [item], errors))
    return rows


def _as_rows(output: Any) -> list[np.ndarray]:
    """float32 CPU rows, whatever features() returned (a torch tensor on any device, numpy, lists)."""
    import numpy as np

    if hasattr(output, "detach"):  # a torch tensor
        output = output.detach().float().cpu().numpy()
    if isinstance(output, (list, tuple)) and output and all(np.ndim(row) == 1 for row in output):
        # Rows of their own lengths (a judge with a query: three questions for one case, one for another).
        return [np.ascontiguousarray(np.asarray(row, dtype=np.float32)) for row in output]
    array = np.asarray(output, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"features() must return one row per image (2-D), got shape {array.shape}")
    return [np.ascontiguousarray(row) for row in array]
