"""One item of compare.html beyond its scores: the image views (side by side, a wipe of A over B, the difference
heatmap, a full-size panel), every generation parameter of both sides, and each side's verdicts.

The page runs no script, so every view is CSS alone: the wipe is A's image in a box clipped at its right edge,
over B's image, and the reader drags the box's resize handle (CSS ``resize``) to move the edge; the full-size
panel is a ``:target`` overlay that a link opens and another closes. A difference is marked by a class and a
visible sign (not by colour alone).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.reports.markup import Markup, html, join

if TYPE_CHECKING:
    from harness.commands.compare import SideItem
    from harness.reports.image_diff import DiffStats

# How the full-size panel embeds each side's image: a JPEG of it at full resolution (the default: about a fifth
# of the PNG's weight and visually the same), the run's own PNG bytes (exact, heavier), or no panel at all.
FULL_SIZE_MODES = ("jpeg", "png", "none")
DEFAULT_FULL_SIZE = "jpeg"
FULL_JPEG_QUALITY = 92

DIFFERS = "≠ differs"

STYLE = """
.t2i-views figure { margin: 0 0 8px 0; }
.t2i-views figcaption, .t2i-full figcaption { font-size: 12px; max-width: 260px; }
.t2i-wipe { position: relative; display: inline-block; line-height: 0; }
.t2i-wipe img, .t2i-heat img { max-width: none; }
.t2i-heat img { image-rendering: pixelated; }
.t2i-wipe .t2i-over { position: absolute; top: 0; left: 0; height: 100%; width: 50%; max-width: 100%;
  min-width: 4px; overflow: hidden; resize: horizontal; border-right: 2px solid #fff; box-shadow: 1px 0 0 #000; }
.t2i-over::-webkit-resizer { background: #fff; border: 1px solid #000; }
.t2i-legend { display: inline-flex; align-items: center; gap: 4px; white-space: nowrap; }
.t2i-ramp { display: inline-block; width: 80px; height: 10px; border: 1px solid #999; }
.t2i-identical { font-weight: bold; }
.t2i-full { display: none; }
.t2i-full:target { display: block; position: fixed; inset: 0; z-index: 10; overflow: auto; background: #fff;
  padding: 1em 2em; }
.t2i-full-images { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.t2i-full img { max-width: none; }
.t2i-full figure { margin: 0; } .t2i-full figcaption { max-width: none; }
.t2i-close { font-size: 16px; font-weight: bold; margin-right: 1em; }
table.t2i-params, table.t2i-verdicts { font-size: 12px; }
table.t2i-params td { min-width: 8em; max-width: 18em; overflow-wrap: break-word; }
tr.t2i-differs { background: #fff6d5; } .t2i-mark { font-weight: bold; white-space: nowrap; }
.t2i-absent { color: #777; }
.t2i-pass { color: #2e7d32; } .t2i-fail { color: #c62828; font-weight: bold; }
"""


@dataclass(frozen=True)
class ViewOptions:
    image_px: int  # the longest side of the thumbnails, the wipe and the heatmap
    full_size: str  # one of FULL_SIZE_MODES


@dataclass(frozen=True)
class ItemViews:
    image_a: Markup  # the cell of A's thumbnail
    image_b: Markup
    views: Markup  # the wipe, the heatmap (or why there is none) and the full-size panel


def differs_mark(differs: bool) -> Markup:
    """The cell after a row of A and B: the visible sign of a difference, or nothing."""
    return html('<td class="t2i-mark">{}</td>', DIFFERS if differs else "")


def item_views(
    index: int, a: SideItem | None, b: SideItem | None, kinds: tuple[str, str], options: ViewOptions
) -> ItemViews:
    """The row's image cells and views; ``index`` names the row (``item-N``) and its panel (``full-N``)."""
    shown = [item for item in (a, b) if item is not None and item.source is not None]
    panel = f"full-{index}" if shown and options.full_size != "none" else None
    cells = (_image_cell(a, kinds[0], panel), _image_cell(b, kinds[1], panel))
    stats: DiffStats | None = None
    if a is not None and b is not None and a.source is not None and b.source is not None:
        views, stats, mismatch = _pair_views(a, b, options)
    elif shown:
        views, mismatch = (
            html('<p class="t2i-no-diff"><em>one side has no image: no overlay or difference</em></p>'),
            None,
        )
    else:
        views, mismatch = Markup(), None
    if panel is not None:
        opener = html('<p><a class="t2i-open" href="#{}">full size</a></p>', panel)
        views = join([views, opener, _full_panel(index, panel, a, b, stats, mismatch, options.full_size)])
    return ItemViews(cells[0], cells[1], html('<div class="t2i-views">{}</div>', views))


def _image_cell(item: SideItem | None, kind: str, panel: str | None) -> Markup:
    if item is None:
        return html("<em>not in this run</em>")
    if item.image is not None:
        image = html('<img src="{}" alt="{} seed {}"/>', item.image, item.case, item.seed)
        return html('<a href="#{}" title="full size">{}</a>', panel, image) if panel else image
    if item.image_refused is not None:
        return html('<em class="t2i-refused">image not shown: {}</em>', item.image_refused)
    if kind == "baseline":
        if item.scores is not None and item.scores.cache_key:
            return html("<em>baseline: scores only</em><br/>cache key <code>{}</code>", item.scores.cache_key)
        return html("<em>baseline: scores only</em>")
    record = item.record
    if record is not None and record.fault:
        return html("<em>{}</em>", record.fault)
    return html("<em>no image ({})</em>", record.outcome if record is not None else "-")


def _pair_views(a: SideItem, b: SideItem, options: ViewOptions) -> tuple[Markup, DiffStats | None, str | None]:
    """The wipe and the heatmap of two images, or why there are none; with the stats, or the size mismatch."""
    from harness.reports.image_diff import SizeMismatch, heatmap_png_with_stats

    assert a.source is not None and b.source is not None and a.thumb_size is not None
    try:
        heatmap, stats = heatmap_png_with_stats(a.source.pixels, b.source.pixels, fit=options.image_px)
    except SizeMismatch as exc:
        (wa, ha), (wb, hb) = exc.size_a, exc.size_b
        why = f"No overlay or difference: the images differ in size ({wa}x{ha} and {wb}x{hb})."
        return html('<p class="t2i-no-diff">{}</p>', why), None, why
    if stats.identical:
        same = ", with the same sha256 in both records" if _sha(a) is not None and _sha(a) == _sha(b) else ""
        views = html(
            '<p class="t2i-identical" data-identical="true">identical pixels</p><p><small>A and B are the same '
            "{}x{} image{}: nothing to overlay or tell apart.</small></p>",
            stats.width,
            stats.height,
            same,
        )
        return views, stats, None
    (width, height), thumb_a, thumb_b = a.thumb_size, a.image, b.image
    wipe = html(
        '<figure class="t2i-wipe-figure"><div class="t2i-wipe"><img class="t2i-under" src="{}" width="{}" '
        'height="{}" alt="B"/><div class="t2i-over"><img src="{}" width="{}" height="{}" alt="A"/></div></div>'
        "<figcaption>Wipe: A left of the white line, B right of it; drag the handle at the foot of the line."
        "</figcaption></figure>",
        thumb_b,
        width,
        height,
        thumb_a,
        width,
        height,
    )
    return join([wipe, _heatmap_figure(_png_uri(heatmap), stats, (width, height))]), stats, None


def _sha(item: SideItem) -> str | None:
    return item.record.image_sha256 if item.record is not None else None


def _heatmap_figure(uri: str, stats: DiffStats, size: tuple[int, int] | None, css: str = "t2i-heat") -> Markup:
    """The heatmap, its numbers and the colour legend (``size``: the display size, as the thumbnails')."""
    dims = html(' width="{}" height="{}"', *size) if size is not None else Markup()
    return html(
        '<figure class="{}" data-max-abs="{}" data-mean-abs="{!r}" data-changed="{}" data-pixels="{}">'
        '<img src="{}"{} alt="difference of A and B"/><figcaption>Difference: {}. '
        '<span class="t2i-legend">0 <span class="t2i-ramp"></span> {}</span></figcaption></figure>',
        css,
        stats.max_abs,
        stats.mean_abs,
        stats.changed,
        stats.pixels,
        uri,
        dims,
        stats.describe(),
        stats.scale,
    )


def _full_panel(
    index: int,
    panel: str,
    a: SideItem | None,
    b: SideItem | None,
    stats: DiffStats | None,
    mismatch: str | None,
    mode: str,
) -> Markup:
    """Both images (one when their pixels are the same) and the heatmap at full size, in a :target overlay."""
    from harness.reports.image_diff import heatmap_png

    some = b if b is not None else a
    assert some is not None
    figures = []
    if stats is not None and stats.identical and a is not None:
        figures.append(_full_figure(a, "t2i-full-a", "A and B (identical pixels)", mode))
    else:
        for item, css, name in ((a, "t2i-full-a", "A"), (b, "t2i-full-b", "B")):
            if item is not None and item.source is not None:
                figures.append(_full_figure(item, css, name, mode))
    if stats is not None and not stats.identical and a is not None and b is not None:
        assert a.source is not None and b.source is not None
        heatmap = heatmap_png(a.source.pixels, b.source.pixels)
        figures.append(_heatmap_figure(_png_uri(heatmap), stats, None, "t2i-heat t2i-full-diff"))
    note = html("<p>{}</p>", mismatch) if mismatch else Markup()
    return html(
        '<div class="t2i-full" id="{}" role="dialog" aria-label="full size: {} seed {}"><p><a class="t2i-close" '
        'href="#item-{}">close ✕</a><strong>{}</strong> seed {} <small>{}</small>: full size, {}</p>{}'
        '<div class="t2i-full-images">{}</div></div>',
        panel,
        some.case,
        some.seed,
        index,
        some.case,
        some.seed,
        some.file,
        "the runs' own PNGs" if mode == "png" else f"JPEG (quality {FULL_JPEG_QUALITY}) of the runs' PNGs",
        note,
        join(figures),
    )


def _full_figure(item: SideItem, css: str, name: str, mode: str) -> Markup:
    assert item.source is not None
    if mode == "png":
        uri = _png_uri(item.source.data)
    else:
        from harness.reports.thumbnails import jpeg_data_uri

        uri = jpeg_data_uri(item.source.pixels, FULL_JPEG_QUALITY)
    width, height = item.source.pixels.size
    return html(
        '<figure><img class="{}" src="{}" alt="{} seed {}, {}"/><figcaption>{}: {}x{}</figcaption></figure>',
        css,
        uri,
        item.case,
        item.seed,
        name,
        name,
        width,
        height,
    )


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Every generation parameter of both sides, and each side's verdicts.

PARAMETERS = (
    "prompt",
    "negative prompt",
    "steps",
    "guidance scale",
    "width",
    "height",
    "seed",
    "tags",
    "cache key",
    "pixels (sha256)",
)
HASHES = ("cache key", "pixels (sha256)")


def parameters_table(a: SideItem | None, b: SideItem | None, kinds: tuple[str, str]) -> Markup:
    """One row per parameter with A's and B's values; a row whose two values are known and differ is marked."""
    values = (_parameters(a), _parameters(b))
    rows = []
    for name in PARAMETERS:
        shown = [values[side].get(name) for side in (0, 1)]
        differs = shown[0] is not None and shown[1] is not None and shown[0] != shown[1]
        cells = join(
            _value_cell(name, value, item, kind) for value, item, kind in zip(shown, (a, b), kinds, strict=True)
        )
        rows.append(
            html(
                '<tr class="{}" data-param="{}"><th>{}</th>{}{}</tr>',
                "t2i-differs" if differs else "",
                name,
                name,
                cells,
                differs_mark(differs),
            )
        )
    return html(
        '<table class="t2i-params"><thead><tr><th></th><th>A</th><th>B</th><th></th></tr></thead><tbody>{}</tbody>'
        "</table>",
        join(rows),
    )


def _parameters(item: SideItem | None) -> dict[str, str]:
    """The values a side records (a baseline: the seed, cache key and pixels' digest only)."""
    if item is None:
        return {}
    values = {"seed": str(item.seed)}
    record = item.record
    if record is not None:
        values |= {
            "prompt": record.prompt,
            "negative prompt": "(none)" if record.negative_prompt is None else record.negative_prompt,
            "steps": str(record.steps),
            "guidance scale": f"{record.guidance_scale:g}",
            "width": "the pipeline's default" if record.width is None else str(record.width),
            "height": "the pipeline's default" if record.height is None else str(record.height),
            "tags": ", ".join(record.tags) if record.tags else "(none)",
        }
        hashes = (record.cache_key, record.image_sha256)
    else:
        hashes = (item.scores.cache_key, item.scores.image_sha256) if item.scores is not None else (None, None)
    for name, value in zip(HASHES, hashes, strict=True):
        if value is not None:
            values[name] = value
    return values


def _value_cell(name: str, value: str | None, item: SideItem | None, kind: str) -> Markup:
    if value is not None:
        if name in HASHES:
            # Compared in full; shown by their start (the whole value in the tooltip), as git shows commits.
            return html('<td><code class="t2i-hash" title="{}">{}…</code></td>', value, value[:12])
        return html("<td>{}</td>", value)
    if item is None:
        why = "not in this run"
    elif kind == "baseline":
        why = "not kept in a baseline"
    else:
        why = "not recorded"
    return html('<td><em class="t2i-absent">{}</em></td>', why)


@dataclass(frozen=True)
class _Absent:
    """Why a side has no value in a row of the verdicts table."""

    reason: str


def verdicts_table(a: SideItem | None, b: SideItem | None) -> Markup:
    """Pass or fail per judge and overall (every judge's verdict), and pytest's outcome, for A and B."""
    from harness.judging.formats import ordered_sections

    titles: dict[str, str] = {}
    for item in (a, b):
        if item is not None and item.scores is not None:
            titles |= {section: verdict.title for section, verdict in item.scores.verdicts.items()}
    rows: list[tuple[str, str, Callable[[SideItem], bool | str | _Absent]]] = [
        (section, titles[section], _judge_verdict(section)) for section in ordered_sections(titles)
    ]
    rows.append(("overall", "overall (every judge)", _overall))
    rows.append(("outcome", "pytest outcome", _outcome))
    body = []
    for ident, title, value_of in rows:
        values = [_Absent("not in this run") if item is None else value_of(item) for item in (a, b)]
        differs = not any(isinstance(v, _Absent) for v in values) and values[0] != values[1]
        body.append(
            html(
                '<tr class="{}" data-judge="{}"><th>{}</th>{}{}</tr>',
                "t2i-differs" if differs else "",
                ident,
                title,
                join(_verdict_cell(value) for value in values),
                differs_mark(differs),
            )
        )
    return html(
        '<table class="t2i-verdicts"><thead><tr><th></th><th>A</th><th>B</th><th></th></tr></thead>'
        "<tbody>{}</tbody></table>",
        join(body),
    )


def _judge_verdict(section: str) -> Callable[[SideItem], bool | _Absent]:
    def verdict(item: SideItem) -> bool | _Absent:
        if item.scores is None:
            return _Absent("not scored")
        found = item.scores.verdicts.get(section)
        return _Absent("no such check") if found is None else found.passed

    return verdict


def _overall(item: SideItem) -> bool | _Absent:
    return item.scores.passed if item.scores is not None else _Absent("not scored")


def _outcome(item: SideItem) -> str | _Absent:
    return item.record.outcome if item.record is not None else _Absent("not kept in a baseline")


def _verdict_cell(value: bool | str | _Absent) -> Markup:
    if isinstance(value, _Absent):
        return html('<td><em class="t2i-absent">{}</em></td>', value.reason)
    if isinstance(value, bool):
        return html('<td class="{}">{}</td>', "t2i-pass" if value else "t2i-fail", "pass" if value else "fail")
    return html("<td>{}</td>", value)
