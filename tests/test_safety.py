"""Nothing unsafe: no YAML object construction, escaped report, contained image paths, tensor-only weights."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import textwrap
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from conftest import Labels, case_yaml
from harness.cases.case_file import CASE_ID_PATTERN, CaseFileError, load_case_file
from harness.common.model_loading import load_state_dict_file
from harness.pytest_plugin.scored_images import IMAGES_DIR, image_path

HARNESS_DIR = Path(__file__).resolve().parent.parent / "harness"


# -- YAML: safe_load-level parsing only --------------------------------------------------------


def payload_file(tmp_path: Path, marker: Path) -> Path:
    """A case file whose !!python/object/apply would create the directory ``marker`` if anything constructed it."""
    path = tmp_path / "evil.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            cases:
              - id: owl
                prompt: !!python/object/apply:os.mkdir ["{marker}"]
                clip: {{expect: "an owl", distractors: ["a hawk"]}}
            """
        )
    )
    return path


def test_python_object_apply_payload_is_rejected_and_never_constructed(tmp_path: Path) -> None:
    # Control: the payload is live. PyYAML's unsafe loader really does run it.
    control_marker = tmp_path / "control-created"
    yaml.unsafe_load(payload_file(tmp_path, control_marker).read_text())
    assert control_marker.exists()

    marker = tmp_path / "pwned"
    path = payload_file(tmp_path, marker)
    with pytest.raises(CaseFileError) as info:
        load_case_file(path)
    assert not marker.exists()
    assert [p.format("evil.yaml") for p in info.value.problems] == [
        "evil.yaml:3: YAML tag '!!python/object/apply:os.mkdir' is not allowed; case files hold plain data only "
        "(remove the tag, and quote the value if it should be a string)"
    ]


def test_payload_in_a_collected_file_is_a_collection_error_and_creates_nothing(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "pwned"
    payload_file(pytester.path, marker)
    result = pytester.runpytest("evil.yaml", "--collect-only")
    assert not marker.exists()
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting evil.yaml*",
            "  evil.yaml:3: YAML tag '!!python/object/apply:os.mkdir' is not allowed*",
        ]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


# -- the HTML report escapes every user string -------------------------------------------------

SCRIPT = "<script>alert('{}')</script>"
IMG = "<img src=x onerror=alert('{}')>"


class _Elements(HTMLParser):
    """Start tags (with attributes) and text of an HTML fragment, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_fragment(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def test_report_shows_hostile_prompts_labels_and_reasons_as_text_only(
    pytester: pytest.Pytester, model_args: list[str]
) -> None:
    def hostile(where: str) -> str:
        return SCRIPT.format(where) + " " + IMG.format(where)

    pytester.makefile(
        ".yaml",
        hostile=f"""\
defaults: {{steps: 2, seeds: [0]}}
cases:
  - id: xss-a
    prompt: "an owl {hostile("prompt")}"
    negative_prompt: "{hostile("negative")}"
    clip: {{expect: "{hostile("label1")}", distractors: ["{hostile("label2")}"]}}
  - id: xss-b
    prompt: "an owl {hostile("prompt")}"
    clip: {{expect: "{hostile("label2")}", distractors: ["{hostile("label1")}"]}}
  - id: xss-skip
    prompt: "an owl"
    clip: {{expect: "an owl", distractors: ["a hawk"]}}
    skip: "{hostile("skip")}"
""",
        # Ids and tags cannot carry markup at all: validation refuses them, and the refusal is in the report too.
        hostile_ids=f"""\
cases:
  - id: "{SCRIPT.format("id")}"
    prompt: "an owl"
    clip: {{expect: "an owl", distractors: ["a hawk"]}}
    tags: ["{IMG.format("tag")}"]
""",
    )
    result = pytester.runpytest(
        "--continue-on-collection-errors", "--html=report.html", "--self-contained-html", *model_args
    )
    result.assert_outcomes(passed=1, failed=1, skipped=1, errors=1)
    result.stdout.fnmatch_lines(["*hostile_ids.yaml:2: case \"<script>alert('id')</script>\": invalid id*"])
    page = (pytester.path / "report.html").read_text(encoding="utf-8")
    text = shown_text_of_report(page)
    for where in ("prompt", "negative", "label1", "label2", "skip"):
        assert SCRIPT.format(where) in text, where
        assert IMG.format(where) in text, where
    assert SCRIPT.format("id") in text  # the collection error, as text


def shown_text_of_report(page: str, names_outside_the_data: bool = False) -> str:
    """The text a browser shows of a pytest-html report.html, asserting on the way that nothing in it is live.

    Outside the embedded data (the page itself, with the harness's summary), the only script is pytest-html's
    own and the only handler its reload button's. pytest-html's script puts every cell, log and environment
    value of the JSON blob into the page as HTML (innerHTML): each of those strings is parsed as a browser
    would, and must hold no script element, no on* handler and no alert(.
    """
    match = re.search(r'<div id="data-container" data-jsonblob="([^"]*)"></div>', page)
    assert match is not None
    outside_html = page[: match.start()] + page[match.end() :]
    if not names_outside_the_data:
        # Prompts, labels and reasons only ever reach the embedded data: no trace of them outside it.
        assert "alert(" not in outside_html and "onerror" not in outside_html
    # With hostile file names, the summary shows them outside the data: as text, never as elements.
    outside = parse_fragment(outside_html)
    assert [tag for tag, _ in outside.tags].count("script") == 1  # pytest-html's app.js
    handlers = [
        (tag, name, value) for tag, attrs in outside.tags for name, value in attrs.items() if name.startswith("on")
    ]
    assert handlers == [("div", "onclick", "location.reload()")]
    assert not any(_runs_code(attrs) for _, attrs in outside.tags)

    data = json.loads(unescape(match.group(1)))
    fragments = []

    def walk(value: object, keys_are_html: bool = False) -> None:
        if isinstance(value, str):
            fragments.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if keys_are_html:
                    fragments.append(key)
                walk(item, keys_are_html)
        elif isinstance(value, list):
            for item in value:
                walk(item, keys_are_html)

    walk({key: value for key, value in data.items() if key != "environment"})  # e.g. data["tests"] is by node id
    for value in data["environment"].values():  # the table's keys are set as text; a nested value's keys as HTML
        walk(value, keys_are_html=True)
    shown_text = ["".join(outside.text)]
    for fragment in fragments:
        elements = parse_fragment(fragment)
        for tag, attrs in elements.tags:
            assert tag != "script", fragment
            assert not any(name.startswith("on") for name in attrs), fragment
            assert all("alert(" not in (value or "") for value in attrs.values()), fragment
        shown_text.append("".join(elements.text))
    return "\n".join(shown_text)


# Attributes whose value a browser loads or runs; elsewhere (title, alt, data-*) an escaped value is only text.
_URL_ATTRIBUTES = ("href", "src", "srcdoc", "action", "formaction", "style")


def _runs_code(attrs: dict[str, str | None]) -> bool:
    return any(
        "alert(" in (attrs.get(name) or "") or "javascript:" in (attrs.get(name) or "") for name in _URL_ATTRIBUTES
    )


HOSTILE_FILE = IMG.format("file") + ".yaml"  # a legal file name on Linux


def test_report_shows_hostile_file_names_parametrize_ids_and_environment_as_text(
    pytester: pytest.Pytester, model_args: list[str], clip_labels: Labels
) -> None:
    # pytest-html writes the node id into the Test cell as it is, and environment values as HTML.
    (pytester.path / HOSTILE_FILE).write_text(
        case_yaml(
            f"""
            - id: good
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.passing}
            - id: bad
              prompt: "{clip_labels.prompt}"
              clip: {clip_labels.failing}
            """
        )
    )
    broken = "broken " + IMG.format("collect") + ".yaml"
    (pytester.path / broken).write_text("cases:\n  - id: x\n")
    pytester.makepyfile(
        test_markup=f"""
        import pytest

        @pytest.mark.parametrize("value", [{IMG.format("param")!r}])
        def test_value(value):
            assert 0, value
        """
    )
    result = pytester.runpytest(
        HOSTILE_FILE,
        broken,
        "test_markup.py",
        "--continue-on-collection-errors",
        "--html=report.html",
        "--self-contained-html",
        "--metadata",
        "t2i-evil",
        IMG.format("env"),
        "--metadata-from-json",
        json.dumps({"nested": {IMG.format("env-key"): IMG.format("env-value")}}),
        *model_args,
    )
    result.assert_outcomes(passed=1, failed=2, errors=1)
    text = shown_text_of_report(
        (pytester.path / "report.html").read_text(encoding="utf-8"), names_outside_the_data=True
    )
    for shown in (
        f"{HOSTILE_FILE}::good[seed=0]",  # the Test cells
        f"{HOSTILE_FILE}::bad[seed=0]",
        f"{HOSTILE_FILE}:9: case 'bad', seed 0",  # the log
        f"{broken}::collect",
        f"test_markup.py::test_value[{IMG.format('param')}]",
        IMG.format("env"),
        IMG.format("env-key"),
        IMG.format("env-value"),
    ):
        assert shown in text, shown


# -- image paths stay inside the report dir ----------------------------------------------------


@pytest.mark.parametrize(
    "file_nodeid",
    [
        "cases/animals.yaml",
        "../../../etc/passwd.yaml",
        "/etc/cron.d/x.yaml",
        "..",
        ".",
        "",
        "a/../../../../b.yaml",
        "..\\..\\windows\\x.yaml",
        "C:\\temp\\x.yaml",
        "cases/%2e%2e/x.yaml",
        "cases/\x00/x.yaml",
        "~/x.yaml",
    ],
)
@pytest.mark.parametrize("case_id", ["owl", "a.b-c_d", "0", "a..", "x" * 100])
def test_image_paths_resolve_inside_the_report_dir(tmp_path: Path, file_nodeid: str, case_id: str) -> None:
    assert CASE_ID_PATTERN.match(case_id)
    report_dir = tmp_path / "reports"
    path = image_path(report_dir, file_nodeid, case_id, 2**63 - 1)
    assert path.is_relative_to((report_dir / IMAGES_DIR).resolve())
    assert path.name == f"{case_id}-seed{2**63 - 1}.png"
    assert path.parent.is_relative_to((report_dir / IMAGES_DIR).resolve())  # a folder per case file


def test_different_case_files_never_share_an_image_folder(tmp_path: Path) -> None:
    files = ["a/b.yaml", "a__b.yaml", "a b.yaml", "a_b.yaml", "a/b c.yaml", "a/b_c.yaml", "x.yaml", "sub/x.yaml"]
    folders = {image_path(tmp_path, file, "owl", 0).parent for file in files}
    assert len(folders) == len(files)


@pytest.mark.parametrize("case_id", ["../../x", "a/../../../x", "/etc/x", "../../../../../../../../x"])
def test_image_path_refuses_an_unvalidated_id_that_would_escape(tmp_path: Path, case_id: str) -> None:
    assert not CASE_ID_PATTERN.match(case_id)  # validation never lets these through; this is the backstop
    with pytest.raises(ValueError, match="refusing to write an image outside the report dir"):
        image_path(tmp_path / "reports", "cases/x.yaml", case_id, 0)


# -- weights: tensors only, no remote code -----------------------------------------------------


class _RunsCode:
    """Unpickling this would create a directory: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_state_dict_with_a_pickled_payload_is_refused(tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "extra": _RunsCode(marker)}, path)
    # Control: the file really runs code when loaded the unsafe way.
    torch.load(path, weights_only=False)
    assert marker.is_dir()
    marker.rmdir()

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_run_with_a_pickled_payload_as_resnet_weights_explains_the_refusal(
    pytester: pytest.Pytester, model_args: list[str]
) -> None:
    import torch

    marker = pytester.path / "pwned"
    torch.save({"fc.weight": torch.zeros(2, 2), "extra": _RunsCode(marker)}, pytester.path / "evil.pt")
    pytester.makefile(
        ".yaml",
        suite='cases:\n  - id: owl\n    prompt: "an owl"\n    steps: 1\n'
        '    clip: {expect: "an owl", distractors: ["a hawk"]}\n    resnet: {expect: ["great grey owl"]}\n',
    )
    result = pytester.runpytest("suite.yaml", *model_args, "--t2i-resnet-weights=evil.pt")
    result.assert_outcomes(errors=1)
    assert not marker.exists()
    result.stdout.fnmatch_lines(
        [
            f"The state dict {pytester.path / 'evil.pt'} (--t2i-resnet-weights) was refused: only tensors are "
            "loaded, so that no code in a weights file can run, and this file holds other pickled objects "
            "(Trying to load unsupported GLOBAL *mkdir whose module * is blocked). Fix: save plain "
            "tensors, preferably as safetensors: *"
        ]
    )
    assert "Traceback" not in result.stdout.str() and "weights_only` set to `False`" not in result.stdout.str()


def test_state_dict_files_with_only_tensors_load(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {"fc.weight": torch.arange(4.0).reshape(2, 2)}
    torch.save(tensors, tmp_path / "ok.pt")
    save_file(tensors, str(tmp_path / "ok.safetensors"))
    for name in ("ok.pt", "ok.safetensors"):
        assert torch.equal(load_state_dict_file(tmp_path / name)["fc.weight"], tensors["fc.weight"])


def _calls(tree: ast.AST, attribute: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute
    ]


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name:
            return ast.literal_eval(keyword.value) if isinstance(keyword.value, ast.Constant) else "<expr>"
    return None


def test_no_remote_code_safetensors_for_models_and_weights_only_loads() -> None:
    sources = {path.name: path.read_text(encoding="utf-8") for path in sorted(HARNESS_DIR.rglob("*.py"))}
    assert sources
    assert [name for name, text in sources.items() if "trust_remote_code" in text] == []

    model_loads = torch_loads = 0
    for name, text in sources.items():
        tree = ast.parse(text)
        for call in _calls(tree, "from_pretrained"):
            receiver = ast.unparse(call.func.value)
            if receiver.endswith(("Processor", "Tokenizer")):
                continue  # no weights in those
            model_loads += 1
            assert _keyword(call, "use_safetensors") is True, f"{name}: {ast.unparse(call)}"
        for call in _calls(tree, "load"):
            if ast.unparse(call.func.value) == "torch":
                torch_loads += 1
                assert _keyword(call, "weights_only") is True, f"{name}: {ast.unparse(call)}"
    assert model_loads >= 2 and torch_loads >= 1  # the pipeline, CLIP, and state-dict files are covered


# -- one escaping rule, in one place -----------------------------------------------------------


def test_pages_are_built_only_from_literal_templates() -> None:
    # harness.reports.markup escapes every value it is given. A template made from a value (an f-string, a
    # variable), or HTML escaped some other way, would go around that rule: no module does either.
    problems = []
    for path in sorted(HARNESS_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)) and path.name != "markup.py":
                modules = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
                if {"html", "markupsafe"} & set(modules):
                    problems.append(f"{where}: imports an escaping of its own ({ast.unparse(node)})")
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            literal = [isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in node.args]
            if node.func.id == "html" and not (literal and literal[0]):
                problems.append(f"{where}: html() with a template that is not a literal: {ast.unparse(node)[:80]}")
            if node.func.id == "join" and len(node.args) > 1 and not literal[1]:
                problems.append(f"{where}: join() with a separator that is not a literal")
            if node.func.id == "Markup" and path.name != "markup.py":
                constant = all(
                    ok or (isinstance(arg, ast.Name) and arg.id.isupper())
                    for arg, ok in zip(node.args, literal, strict=True)
                )
                if not constant:
                    problems.append(f"{where}: Markup() of a value: {ast.unparse(node)[:80]}")
    assert problems == []
    # The rule has callers: the report, the summary, merge and compare all render through it.
    users = {
        p.name
        for p in HARNESS_DIR.rglob("*.py")
        if "from harness.reports.markup import" in p.read_text(encoding="utf-8")
    }
    assert {"report_rows.py", "summary.py", "merge.py", "compare.py"} <= users
