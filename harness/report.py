"""The pytest-html side of the report: per-row image, prompts and scores; environment; atomic writes."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any

import pytest

from harness.atomic import atomic_write_text
from harness.state import get_state
from harness.summary import GRID_QUALITY, GRID_THUMB_PX
from harness.thumbnails import thumbnail_data_uris

# Enough to review an image at a glance; the full-size PNG is a click away. 500 rows stay light.
THUMBNAIL_PX = 160
RECORD_PROPERTY = "t2i_record"
ENVIRONMENT_PROPERTY = "t2i_environment"

COLUMNS = ("Image", "Prompt", "Negative prompt", "Seed", "Steps", "Guidance", "Size", "CLIP", "ResNet top 5", "Timings")


def record_of(report: Any) -> dict[str, Any] | None:
    for name, value in getattr(report, "user_properties", ()):
        if name == RECORD_PROPERTY:
            return value
    return None


def clip_table(clip: dict[str, Any] | None) -> str:
    if not clip:
        return ""
    probs = clip["probs"]
    winner = max(range(len(probs)), key=probs.__getitem__)
    rows = []
    for index, (label, prob) in enumerate(zip(clip["labels"], probs, strict=True)):
        classes = " ".join(c for c, on in (("t2i-intended", index == 0), ("t2i-picked", index == winner)) if on)
        mark = "intended" if index == 0 else ""
        if index == winner:
            mark = f"{mark} picked".strip()
        rows.append(f'<tr class="{classes}"><td>{prob:.4f}</td><td>{escape(mark)}</td><td>{escape(label)}</td></tr>')
    return f'<table class="t2i-clip">{"".join(rows)}</table>'


def resnet_table(resnet: dict[str, Any] | None) -> str:
    if not resnet:
        return ""
    expected = set(resnet["expect"])
    rows = "".join(
        f'<tr class="{"t2i-intended" if name in expected else ""}"><td>{prob:.4f}</td><td>{escape(name)}</td></tr>'
        for name, prob in resnet["top"]
    )
    want = escape(", ".join(resnet["expect"]))
    return f'<table class="t2i-resnet">{rows}</table><div>expected (top {resnet["top_k"]}): {want}</div>'


def row_cells(
    record: dict[str, Any], report_dir: Path, html_dir: Path, grid_thumbnails: dict[str, str] | None = None
) -> list[str]:
    """The report's cells for one record (HTML, user strings escaped), in COLUMNS order.

    With ``grid_thumbnails``, the summary grid's thumbnail is made from the same decode of the PNG
    and stored there under the record's ``image``.
    """
    image = ""
    if record.get("image"):
        png = report_dir / record["image"]
        if png.is_file():
            href = Path(os.path.relpath(png, html_dir)).as_posix()
            thumbnail, grid = thumbnail_data_uris(png, [(THUMBNAIL_PX, 80), (GRID_THUMB_PX, GRID_QUALITY)])
            if grid_thumbnails is not None:
                grid_thumbnails[record["image"]] = grid
            image = (
                f'<a href="{escape(href)}" target="_blank">'
                f'<img class="t2i-thumb" src="{thumbnail}" alt="{escape(record["case"])}"/></a>'
            )
    elif record.get("fault"):
        image = f"<em>{escape(record['fault'])}</em>"
    size = f"{record['width']}x{record['height']}" if record.get("width") else "pipeline default"
    timings = "<br/>".join(f"{escape(k)} {v:.3f}" for k, v in record.get("timings", {}).items())
    if record.get("cached"):
        timings = '<div class="t2i-cached">image from cache</div>' + timings
    warnings = "".join(f'<div class="t2i-warning">&#9888; {escape(note)}</div>' for note in record.get("warnings", []))
    return [
        image,
        escape(record["prompt"]) + warnings,
        escape(record.get("negative_prompt") or ""),
        str(int(record["seed"])),
        str(int(record["steps"])),
        f"{float(record['guidance_scale']):g}",
        escape(size),
        clip_table(record.get("clip")),
        resnet_table(record.get("resnet")),
        timings,
    ]


class HtmlReportHooks:
    """Registered only when pytest-html is installed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._grid_thumbnails: dict[str, str] = {}  # made with the table's, used by the summary

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self._make_writes_atomic(config)

    @staticmethod
    def _make_writes_atomic(config: pytest.Config) -> None:
        # pytest-html writes report.html in place; an interrupted run would leave half a file.
        # Route its single write through a temp file and a rename.
        from pytest_html.basereport import BaseReport

        for plugin in config.pluginmanager.get_plugins():
            if isinstance(plugin, BaseReport) and hasattr(plugin, "_write_report"):
                path = plugin._report_path
                plugin._write_report = lambda rendered, path=path: atomic_write_text(path, rendered)

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = "t2i-harness report"

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: Any
    ) -> None:
        # Above the table: pass rates per file, tag and case, and a grid of every image.
        from harness.summary import summary_html

        state = get_state(self.config)
        postfix.append(
            summary_html(list(state.finished.values()), state.report_dir, self._html_dir(), self._grid_thumbnails)
        )

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        # After "Result" and "Test".
        cells[2:2] = [f"<th>{escape(name)}</th>" for name in COLUMNS]

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        record = record_of(report)
        if record:
            values = row_cells(record, get_state(self.config).report_dir, self._html_dir(), self._grid_thumbnails)
        else:
            values = [""] * len(COLUMNS)
        cells[2:2] = [f'<td class="col-t2i">{value}</td>' for value in values]

    def _html_dir(self) -> Path:
        html_path = self.config.getoption("htmlpath")
        return (Path.cwd() / Path(os.path.expandvars(html_path)).expanduser()).parent

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # pytest-html renders the pytest-metadata dict at the end of the run, so models loaded
        # during the run still make it into the environment section.
        try:
            from pytest_metadata.plugin import metadata_key
        except ImportError:
            return
        metadata = self.config.stash.get(metadata_key, None)
        if metadata is not None:
            metadata.update(get_state(self.config).environment)
