"""`compare` and `merge` fed hand-made, hostile results.json files and baselines: one line per problem, never a
traceback; bad records refused by name (exit status 1) while the rest is written; no file from outside a run."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from harness.__main__ import main
from harness.reports.records import SEED_MAX

GREEN, RED = (0, 200, 0), (255, 0, 0)  # a run's own images are green; the secret outside every run is red


def png(path: Path, color: tuple[int, int, int] = GREEN, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, format="PNG")
    return path


def record(case: str = "owl", seed: int = 0, file: str = "a.yaml", **fields: Any) -> dict[str, Any]:
    """A record as harness.reports.results.ItemRecord writes it, with ``fields`` replaced."""
    base: dict[str, Any] = {
        "id": f"{file}::{case}[seed={seed}]",
        "case": case,
        "file": file,
        "line": 3,
        "seed": seed,
        "prompt": "an owl on a branch",
        "negative_prompt": None,
        "steps": 2,
        "guidance_scale": 7.5,
        "width": 64,
        "height": 64,
        "tags": ["animals"],
        "image": f"images/{file}/{case}-seed{seed}.png",
        "clip": {
            "labels": ["an owl", "a hawk"],
            "probs": [0.75, 0.25],
            "expect": "an owl",
            "min_prob": None,
            "margin": 0.5,
            "passed": True,
        },
        "resnet": {
            "expect": ["great grey owl"],
            "expect_probs": [0.5],
            "top_k": 5,
            "top": [["great grey owl", 0.5], ["kite", 0.1]],
            "passed": True,
        },
        "fault": None,
        "cached": False,
        "cache_key": None,
        "outcome": "passed",
        "timings": {"total_s": 0.25},
        "warnings": [],
        "baseline": None,
    }
    base.update(fields)
    return base


def write_run(run: Path, records: list[Any], environment: Any = None, images: bool = True) -> Path:
    """A report dir holding ``records`` (a green PNG for each valid-looking image path that is inside it)."""
    run.mkdir(parents=True, exist_ok=True)
    for item in records:
        image = item.get("image") if isinstance(item, dict) else None
        if images and isinstance(image, str) and image.startswith("images/") and ".." not in image:
            if not (run / image).exists():
                png(run / image)
    document = {"version": 1, "environment": environment or {"torch": "2.5"}, "results": records}
    (run / "results.json").write_text(json.dumps(document), encoding="utf-8")
    return run


def embedded_colors(page: str) -> list[tuple[int, int, int]]:
    """The centre pixel of every data: image in a page: how a test sees which PNG was embedded."""
    colors = []
    for data in re.findall(r"data:image/[a-z]+;base64,([A-Za-z0-9+/=]+)", page):
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            rgb = image.convert("RGB")
            colors.append(rgb.getpixel((rgb.width // 2, rgb.height // 2)))
    return colors


def is_red(color: tuple[int, int, int]) -> bool:
    return color[0] > 200 and color[1] < 60  # JPEG shifts colours a little


# -- records of the wrong shape ---------------------------------------------------------------

BAD_RECORDS: list[tuple[str, Any, str]] = [
    # (what, the record, what the refusal must say after "record N (id ...): ")
    (
        "seed not a number",
        record("s1", seed="x"),
        f"field 'seed': expected a whole number from 0 to {SEED_MAX}, got 'x'",
    ),
    ("seed a bool", record("s2", seed=True), f"field 'seed': expected a whole number from 0 to {SEED_MAX}, got true"),
    ("seed negative", record("s3", seed=-1), f"field 'seed': expected a whole number from 0 to {SEED_MAX}, got -1"),
    (
        "seed huge",
        record("s4", seed=2**70),
        f"field 'seed': expected a whole number from 0 to {SEED_MAX}, got 1180591620717411303424",
    ),
    (
        "clip a number",
        record("c1", clip=5),
        "field 'clip': expected an object with labels, probs and passed or null, got 5",
    ),
    (
        "probs not numbers",
        record("c2", clip={**record()["clip"], "probs": ["a", "b"]}),
        "field 'clip.probs[0]': expected a number, got 'a'",
    ),
    (
        "labels and probs of different lengths",
        record("c3", clip={**record()["clip"], "labels": ["a", "b", "c"]}),
        "field 'clip.probs': expected 3 numbers, one per label, got a list of 2",
    ),
    (
        "one label",
        record("c4", clip={**record()["clip"], "labels": ["a"], "probs": [1.0]}),
        "field 'clip.labels': expected a list of 2 or more (a string each), got a list of 1",
    ),
    (
        "passed a string",
        record("c5", clip={**record()["clip"], "passed": "yes"}),
        "field 'clip.passed': expected true or false, got 'yes'",
    ),
    ("outcome not a string", record("o1", outcome=["passed"]), "field 'outcome': expected a string, got a list of 1"),
    ("file a number", record("f1", file=5, id="five"), "field 'file': expected a string, got 5"),
    (
        "prompt missing",
        {k: v for k, v in record("p1").items() if k != "prompt"},
        "field 'prompt': expected a string, got nothing (the field is missing)",
    ),
    ("guidance a string", record("g1", guidance_scale="7.5"), "field 'guidance_scale': expected a number, got '7.5'"),
    ("tags a string", record("t1", tags="animals"), "field 'tags': expected a list (a string each), got 'animals'"),
    ("image a number", record("i1", image=5), "field 'image': expected a string or null, got 5"),
    (
        "top_k markup",
        record("r1", resnet={**record()["resnet"], "top_k": "<script>window.__t2i_xss=1</script>"}),
        "field 'resnet.top_k': expected a whole number from 1 to 1000, got '<script>window.__t2i_xss=1</script>'",
    ),
    (
        "top not pairs",
        record("r2", resnet={**record()["resnet"], "top": [["kite"]]}),
        "field 'resnet.top[0]': expected a [class name, probability] pair, got a list of 1",
    ),
    (
        "expect_probs short",
        record("r3", resnet={**record()["resnet"], "expect": ["a", "b"]}),
        "field 'resnet.expect_probs': expected 2 numbers, one per expected class, got a list of 1",
    ),
    (
        "timings not numbers",
        record("m1", timings={"total_s": "fast"}),
        "field 'timings.total_s': expected a number of 0 or more, got 'fast'",
    ),
    (
        "warnings not strings",
        record("w1", warnings=[{"a": 1}]),
        "field 'warnings[0]': expected a string, got an object",
    ),
    (
        "baseline status",
        record("b1", baseline={"name": "main", "status": "<b>"}),
        "field 'baseline.status': expected one of regressed, improved, unchanged, nondeterministic, new, got '<b>'",
    ),
    ("cached a number", record("k1", cached=1), "field 'cached': expected true or false, got 1"),
]


def _part(index: int, item: Any) -> str:
    return (
        f"record {index} (id {item['id']!r})"
        if isinstance(item, dict) and isinstance(item.get("id"), str)
        else f"record {index}"
    )


def hostile_run(root: Path) -> tuple[Path, list[str]]:
    """A run with one good record, every BAD_RECORDS entry, and records that are not objects."""
    records: list[Any] = [record("good"), *(bad for _, bad, _ in BAD_RECORDS), "just a string", None, [1, 2]]
    run = write_run(root / "run", records)
    source = run / "results.json"
    expected = [
        f"{source}: {_part(index + 1, bad)}: {problem}; the record is left out"
        for index, (_, bad, problem) in enumerate(BAD_RECORDS)
    ]
    first_non_object = len(BAD_RECORDS) + 1
    expected += [
        f"{source}: record {first_non_object}: expected an object, got 'just a string'; the record is left out",
        f"{source}: record {first_non_object + 1}: expected an object, got null; the record is left out",
        f"{source}: record {first_non_object + 2}: expected an object, got a list of 2; the record is left out",
    ]
    return run, expected


def _refused_lines(err: str, command: str) -> list[str]:
    prefix = f"python -m harness {command}: refused: "
    return [line[len(prefix) :] for line in err.splitlines() if line.startswith(prefix)]


def _page_refusals(page: str) -> list[str]:
    from html import unescape

    section = re.search(r'<section id="t2i-refused">(.*?)</section>', page, re.S)
    assert section is not None
    return [unescape(item) for item in re.findall(r"<li>(.*?)</li>", section.group(1), re.S)]


def test_compare_refuses_each_bad_record_by_name_and_still_writes_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, expected = hostile_run(tmp_path)
    out = tmp_path / "compare.html"
    assert main(["compare", str(run), str(run), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    # Each side reads the file: every refusal twice, in order.
    assert _refused_lines(captured.err, "compare") == expected + expected
    assert captured.err.splitlines()[-1] == (
        f"python -m harness compare: {2 * len(expected)} part(s) of the input refused (listed above and at the top of "
        "the page); the rest was written"
    )
    assert (
        captured.out
        == f"{out}: 1 items: 0 regressed, 0 improved, 1 unchanged, 0 not comparable, 0 only in A, 0 only in B; "
        "1 cases: 0 regressed, 0 improved, 1 unchanged, 0 not comparable, 0 only in A, 0 only in B\n"
    )
    page = out.read_text(encoding="utf-8")
    assert _page_refusals(page) == expected + expected
    assert page.count('data-case="good"') == 1
    assert "<script>window.__t2i_xss" not in page and "&lt;script&gt;window.__t2i_xss=1&lt;/script&gt;" in page


def test_merge_refuses_each_bad_record_by_name_and_still_merges_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, expected = hostile_run(tmp_path)
    out = tmp_path / "merged"
    assert main(["merge", str(run), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert _refused_lines(captured.err, "merge") == expected
    assert captured.out.splitlines()[0] == f"{out}: 1 items from 1 runs; open {out / 'report.html'}"
    document = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in document["results"]] == ["a.yaml::good[seed=0]"]
    assert document["results"][0] == record("good")  # written back as it was read
    page = (out / "report.html").read_text(encoding="utf-8")
    assert _page_refusals(page) == expected
    assert "<script>window.__t2i_xss" not in page


# -- whole files that cannot be read: one line, exit status 2 -----------------------------------


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


UNREADABLE: list[tuple[str, bytes, str]] = [
    ("nested 100k deep", ('{"results": ' + _deep(100_000) + "}").encode(), "nested deeper than 32 levels"),
    ("nested 200 deep", ('{"results": [' + _deep(200) + "]}").encode(), "nested deeper than 32 levels (at results[0]"),
    ("not UTF-8", b'{"results": [], "environment": {"x": "\xff\xfe"}}', "not UTF-8 text (byte 0xff at offset 38)"),
    ("NaN", b'{"results": [{"seed": NaN}]}', "NaN is not a JSON number"),
    ("Infinity", b'{"results": [{"seed": -Infinity}]}', "-Infinity is not a JSON number"),
    ("1e999", b'{"results": [{"guidance_scale": 1e999}]}', "the number 1e999 is too large"),
    ("5000 digits", b'{"results": [{"seed": ' + b"9" * 5000 + b"}]}", "a whole number of 5000 digits is too large"),
    (
        "lone surrogate",
        b'{"results": [{"prompt": "\\ud800"}]}',
        "a string that is not valid Unicode (a lone surrogate escape) at results[0].prompt",
    ),
    ("surrogate key", b'{"results": [{"\\udfff": 1}]}', "a key that is not valid Unicode"),
    ("a list", b"[1, 2]", "no 'results' list; is this a t2i-harness results.json?"),
    ("results an object", b'{"results": {"a": 1}}', "no 'results' list"),
    ("version 2", b'{"version": 2, "results": []}', "format version 2; this harness reads version 1"),
    ("broken", b"{not json", "not valid JSON (Expecting property name enclosed in double quotes)"),
    ("empty", b"", "not valid JSON (Expecting value)"),
]


@pytest.mark.parametrize(("content", "message"), [(c, m) for _, c, m in UNREADABLE], ids=[w for w, _, _ in UNREADABLE])
@pytest.mark.parametrize("command", ["compare", "merge"])
def test_unreadable_results_json_is_one_line_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: bytes, message: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_bytes(content)
    out = tmp_path / ("compare.html" if command == "compare" else "merged")
    args = (
        ["compare", str(run), str(run), "-o", str(out)] if command == "compare" else ["merge", str(run), "-o", str(out)]
    )
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"python -m harness {command}: {run / 'results.json'}")
    assert "not a readable results.json" in lines[0] and message in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists()  # nothing is written when an input cannot be read


def test_results_json_that_is_not_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    (run / "results.json").mkdir(parents=True)
    assert main(["merge", str(run), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"python -m harness merge: {run / 'results.json'}: not a readable results.json: not a regular file\n"
    )
    fifo_run = tmp_path / "fifo-run"
    fifo_run.mkdir()
    os.mkfifo(fifo_run / "results.json")  # reading it would wait for a writer forever
    assert main(["compare", str(fifo_run), str(fifo_run), "-o", str(tmp_path / "c.html")]) == 2
    assert "results.json: not a readable results.json: not a regular file" in capsys.readouterr().err


def test_environment_of_the_wrong_shape_is_refused_and_the_rest_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_run(tmp_path / "a", [record("good")], environment=["not", "an", "object"])
    b = write_run(tmp_path / "b", [record("good")], environment={"torch": "2.5", "nested": {"x": 1}, "n": 3})
    out = tmp_path / "compare.html"
    assert main(["compare", str(a), str(b), "-o", str(out)]) == 1
    assert _refused_lines(capsys.readouterr().err, "compare") == [
        f"{a / 'results.json'}: environment: expected an object, got a list of 3; the environment is left out",
        f"{b / 'results.json'}: environment entry 'nested': expected a string, got an object; left out",
    ]
    page = out.read_text(encoding="utf-8")
    assert "<th>torch</th><td>-</td><td>2.5</td>" in page and "<th>n</th><td>-</td><td>3</td>" in page


def test_compare_refuses_records_that_repeat_a_case_and_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", [record("owl"), record("owl", id="other id")])
    assert main(["compare", str(run), str(run), "-o", str(tmp_path / "c.html")]) == 1
    source = run / "results.json"
    assert (
        _refused_lines(capsys.readouterr().err, "compare")
        == [
            f"{source}: record 1 (id 'other id'): the same case file, case and seed as record 0; "
            "only the first of them is compared"
        ]
        * 2
    )


# -- outputs that cannot be written ------------------------------------------------------------


def test_compare_output_that_is_a_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", [record()])
    out = tmp_path / "reports"
    out.mkdir()
    assert main(["compare", str(run), str(run), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"python -m harness compare: -o {out}: is a directory; name the page to write, e.g. {out / 'compare.html'}\n"
    )
    assert list(out.iterdir()) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["compare", str(run), str(run), "-o", str(blocker / "compare.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m harness compare: -o {blocker / 'compare.html'}: cannot write the page (")
    assert len(err.splitlines()) == 1 and blocker.read_text() == "x"


def test_merge_output_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", [record()])
    out = tmp_path / "merged"
    out.write_text("keep me")
    assert main(["merge", str(run), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"python -m harness merge: -o {out}: exists and is not a directory; name the report dir to write\n"
    )
    assert out.read_text() == "keep me"
    assert main(["merge", str(run), "-o", str(out / "below")]) == 2
    assert "Traceback" not in capsys.readouterr().err


# -- images: only PNGs inside the run, and the refusal is named ----------------------------------


def image_trap(root: Path) -> tuple[Path, dict[str, str]]:
    """A run whose records name images every way that must be refused, next to a red secret.png outside it.

    Returns the run and, per case, the problem its refusal must state."""
    secret = png(root / "secret" / "secret.png", RED)
    run = root / "run"
    images = run / "images"
    png(images / "ok.png")
    png(run / "javascript:window.__t2i_xss=1" / "x.png")  # legal inside the run; its link must not be a URL scheme
    (images / "escape.png").symlink_to(secret)
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), RED).save(jpeg, format="JPEG")
    (images / "jpeg.png").write_bytes(jpeg.getvalue())
    png_bytes = (images / "ok.png").read_bytes()
    (images / "page.html").write_bytes(png_bytes)
    (images / "truncated.png").write_bytes(png_bytes[:40])
    (images / "folder.png").mkdir()
    os.mkfifo(images / "fifo.png")
    cases = {
        "absolute": (str(secret), "is an absolute path; an image must be named relative to the run dir"),
        "dotdot": ("../secret/secret.png", "resolves outside the run dir"),
        "symlink": ("images/escape.png", "resolves outside the run dir"),
        "jpeg": ("images/jpeg.png", "is not a PNG (the file does not start with the PNG signature)"),
        "html": ("images/page.html", "is not a .png file name"),
        "truncated": ("images/truncated.png", "is not a PNG that decodes ("),
        "missing": ("images/missing.png", "does not exist"),
        "folder": ("images/folder.png", "is not a regular file"),
        "fifo": ("images/fifo.png", "is not a regular file"),
        "nul": ("images/ok.png\x00.png", "holds a NUL character"),
    }
    records = [record("ok", image="images/ok.png"), record("scheme", image="javascript:window.__t2i_xss=1/x.png")]
    records += [record(case, image=image) for case, (image, _) in cases.items()]
    write_run(run, records, images=False)
    return run, {case: f"field 'image': {image!r} {problem}" for case, (image, problem) in cases.items()}


def _image_refusals(lines: list[str], source: Path, consequence: str) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.fullmatch(
            rf"{re.escape(str(source))}: record \d+ \(id 'a\.yaml::(\w+)\[seed=0\]'\): (.*); {consequence}", line
        )
        assert match is not None, line
        found[match.group(1)] = match.group(2)
    return found


def _assert_problems(found: dict[str, str], expected: dict[str, str]) -> None:
    assert set(found) == set(expected)
    for case, problem in expected.items():
        assert found[case].startswith(problem), (case, found[case])


def test_compare_embeds_only_pngs_inside_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, expected = image_trap(tmp_path)
    out = tmp_path / "compare.html"
    assert main(["compare", str(run), str(run), "-o", str(out)]) == 1
    lines = _refused_lines(capsys.readouterr().err, "compare")
    assert len(lines) == 2 * len(expected)
    _assert_problems(_image_refusals(lines, run / "results.json", "the record is shown without its image"), expected)
    page = out.read_text(encoding="utf-8")
    colors = embedded_colors(page)
    # ok and scheme, on both sides (the control, so that a leak would be seen), and each one's full size (once:
    # both sides are the same run, so the pixels are identical and there is no heatmap).
    assert len(colors) == 4 + 2
    assert not any(is_red(color) for color in colors)
    for case in expected:
        row = re.search(rf'<tr class="[^"]*" data-file="a.yaml" data-case="{case}".*?</tr>', page, re.S)
        assert row is not None and row.group(0).count("image not shown: field &#x27;image&#x27;") == 2, case
    assert len(_page_refusals(page)) == 2 * len(expected)


def test_merge_copies_only_pngs_inside_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, expected = image_trap(tmp_path)
    out = tmp_path / "merged"
    assert main(["merge", str(run), "-o", str(out)]) == 1
    lines = _refused_lines(capsys.readouterr().err, "merge")
    _assert_problems(_image_refusals(lines, run / "results.json", "its image is left out"), expected)
    document = json.loads((out / "results.json").read_text(encoding="utf-8"))
    images = {r["case"]: r["image"] for r in document["results"]}
    assert images == {"ok": "images/ok.png", "scheme": "javascript:window.__t2i_xss=1/x.png"} | dict.fromkeys(expected)
    secret = (tmp_path / "secret/secret.png").read_bytes()
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert copied == ["images/ok.png", "javascript:window.__t2i_xss=1/x.png", "report.html", "results.json"]
    assert all((out / name).read_bytes() != secret for name in copied)
    page = (out / "report.html").read_text(encoding="utf-8")
    colors = embedded_colors(page)
    assert len(colors) == 4 and not any(is_red(color) for color in colors)  # table and grid, for ok and scheme
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert sorted(set(hrefs)) == ["images/ok.png", "javascript%3Awindow.__t2i_xss%3D1/x.png"]
    assert len(_page_refusals(page)) == len(expected)
    assert page.count("image not shown: field &#x27;image&#x27;") == len(expected)


# -- baselines: read through the same reader ----------------------------------------------------


def _baseline(path: Path, **changes: Any) -> Path:
    entry = {
        "case": "owl",
        "seed": 0,
        "cache_key": None,
        "clip": {"labels": ["an owl", "a hawk"], "prob": 0.75, "margin": 0.5, "passed": True},
        "resnet": None,
    }
    document: dict[str, Any] = {
        "version": 1,
        "baseline": "main",
        "file": "a.yaml",
        "environment": {},
        "items": {"owl[seed=0]": entry},
    }
    for dotted, value in changes.items():
        target = document
        *parents, last = dotted.split("__")
        for name in parents:
            target = target[name]
        target[last] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


BAD_BASELINES: list[tuple[str, dict[str, Any], str]] = [
    ("seed", {"items__owl[seed=0]__seed": "x"}, "field 'items.owl[seed=0].seed': expected a whole number"),
    (
        "passed",
        {"items__owl[seed=0]__clip__passed": "false"},
        "field 'items.owl[seed=0].clip.passed': expected true or false, got 'false'",
    ),
    (
        "labels",
        {"items__owl[seed=0]__clip__labels": []},
        "field 'items.owl[seed=0].clip.labels': expected a list of 2 or more",
    ),
    ("file", {"file": 5}, "field 'file': expected a string, got 5"),
    ("items", {"items": [1]}, "field 'items': expected an object (a value each), got a list of 1"),
    (
        "key",
        {
            "items__owl[seed=1]": {
                "case": "owl",
                "seed": 0,
                "clip": {"labels": ["a", "b"], "prob": 0.5, "margin": 0.0, "passed": True},
            }
        },
        "field 'items.owl[seed=1]': expected an entry named 'owl[seed=0]', got 'owl[seed=1]'",
    ),
    ("environment", {"environment": {"x": [1]}}, "field 'environment.x': expected a string, got a list of 1"),
    ("version", {"version": "1"}, "field 'version': expected 1, got '1'"),
]


@pytest.mark.parametrize(
    ("changes", "message"), [(c, m) for _, c, m in BAD_BASELINES], ids=[w for w, _, _ in BAD_BASELINES]
)
def test_compare_with_a_bad_baseline_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], message: str
) -> None:
    path = _baseline(tmp_path / "baselines/main/a.yaml.json", **changes)
    run = write_run(tmp_path / "run", [record()])
    assert main(["compare", str(tmp_path / "baselines/main"), str(run), "-o", str(tmp_path / "c.html")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"python -m harness compare: {tmp_path / 'baselines/main'}: neither a run (no results.json in it) nor a "
        f"baseline: {path}: not a readable t2i baseline file: {message}"
    )
    assert line.endswith("; restore it from version control or save the baseline again with --t2i-save-baseline.")


def test_a_good_baseline_still_compares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _baseline(tmp_path / "baselines/main/a.yaml.json")
    run = write_run(tmp_path / "run", [record()])
    assert main(["compare", str(tmp_path / "baselines/main"), str(run), "-o", str(tmp_path / "c.html")]) == 0
    assert "1 unchanged" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b'{"version": 1, "items": {"x": NaN}}', b"\xff"],
    ids=["deep", "nan", "utf8"],
)
def test_plugin_with_a_broken_baseline_is_one_usage_error(pytester: pytest.Pytester, content: bytes) -> None:
    # The plugin reads the baseline at start-up, before any model loads: no case file or model is needed.
    (pytester.mkdir("baselines") / "main").mkdir()
    (pytester.path / "baselines/main/a.yaml.json").write_bytes(content)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--t2i-baseline=main")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"ERROR: {pytester.path / 'baselines/main/a.yaml.json'}: not a readable t2i baseline file: " in err
    assert "Traceback" not in err and "RecursionError" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("ERROR: ")
    ]


# -- markup in every string field (tests/test_browser.py opens these pages in Chromium) ---------


def markup(n: int) -> str:
    """Markup that, were it ever rendered, would leave a .t2i-xss element and set window.__t2i_xss."""
    return f"<img class=t2i-xss src=x onerror=window.__t2i_xss={n}>"


def markup_records() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Two valid records with markup in every string field (one with an image, one with a fault instead),
    and those strings by field."""
    s = {
        name: markup(n)
        for n, name in enumerate(
            (
                "id",
                "case",
                "file",
                "prompt",
                "negative_prompt",
                "tag",
                "image",
                "label",
                "distractor",
                "expect",
                "resnet_expect",
                "top_class",
                "fault",
                "cache_key",
                "outcome",
                "timing",
                "warning",
                "baseline",
                "id2",
            ),
            start=1,
        )
    }
    with_image = record(
        s["case"],
        file=s["file"],
        id=s["id"],
        prompt=s["prompt"],
        negative_prompt=s["negative_prompt"],
        tags=[s["tag"]],
        image=f"images/{s['image']}.png",
        clip={"labels": [s["label"], s["distractor"]], "probs": [0.6, 0.4], "expect": s["expect"], "passed": True},
        resnet={
            "expect": [s["resnet_expect"]],
            "expect_probs": [0.3],
            "top_k": 5,
            "top": [[s["top_class"], 0.3]],
            "passed": True,
        },
        cache_key=s["cache_key"],
        outcome=s["outcome"],
        timings={s["timing"]: 0.5},
        warnings=[s["warning"]],
        baseline={"name": s["baseline"], "status": "unchanged"},
    )
    with_fault = record(s["case"], seed=1, file=s["file"], id=s["id2"], image=None, fault=s["fault"], outcome="error")
    return [with_image, with_fault], s


def malicious_run(root: Path) -> tuple[Path, dict[str, str], set[str]]:
    """One results.json with everything at once: markup in every string field, records of the wrong shape,
    images outside the run. Returns the run, the markup strings by field and the ids of the refused records."""
    run, image_problems = image_trap(root)
    document = json.loads((run / "results.json").read_text(encoding="utf-8"))
    good, strings = markup_records()
    document["results"] += good + [bad for _, bad, _ in BAD_RECORDS]
    document["environment"] = {markup(90): markup(91)}
    (run / "results.json").write_text(json.dumps(document), encoding="utf-8")
    png(run / good[0]["image"])
    refused = {f"a.yaml::{case}[seed=0]" for case in image_problems}
    refused |= {bad["id"] for _, bad, _ in BAD_RECORDS if "id" in bad}
    strings |= {"environment key": markup(90), "environment value": markup(91)}
    return run, strings, refused


def test_a_decompression_bomb_is_refused_not_decoded(tmp_path: Path) -> None:
    from harness.reports.run_images import ImageRefused, run_image

    # 10000 x 10000 one-bit pixels: a PNG of a few kB that would decode to 300 MB of RGB.
    Image.new("1", (10_000, 10_000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(ImageRefused, match=r"is not a PNG that decodes \(DecompressionBombWarning: "):
        run_image(tmp_path, "bomb.png")
