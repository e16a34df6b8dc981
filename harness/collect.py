"""Collect YAML case files into pytest items: one item per case and seed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import check_mode
from harness.cases import MAX_CASE_FILE_BYTES, Case, CaseFileError, load_case_file
from harness.checks import CaseCheckFailed
from harness.fixtures import is_own_fixture
from harness.prompt_length import PromptTruncatedWarning
from harness.results import ItemRecord
from harness.runner import CacheWriteWarning, Judges, apply_to_record, innermost_frame
from harness.state import get_state
from harness.yaml_source import has_top_level_key

if TYPE_CHECKING:
    from harness.pipeline_handle import PipelineHandle
    from harness.scoring import ClipScorer, ImagenetClassifier

CASE_FILE_SUFFIXES = (".yaml", ".yml")
# When parsing cannot answer (a syntax error before the top-level key): a case file with a typo must
# still be collected, so that its error is shown rather than its cases silently lost.
_LOOKS_LIKE_CASES = re.compile(r"^\ufeff?(\{\s*)?[\"']?cases[\"']?\s*:", re.MULTILINE)


def is_case_file(file_path: Path, config: pytest.Config) -> bool:
    """A file named on the command line always is; one found by recursion only if its top level has `cases:`.

    Recursing a repository finds CI workflows and compose files too. The top level is read by parsing
    (a BOM, a quoted key or flow style are still a case file), never by matching text alone.
    """
    if file_path.suffix not in CASE_FILE_SUFFIXES:
        return False
    if file_path.resolve() in named_on_command_line(config):
        return True
    try:
        with open(file_path, "rb") as handle:
            head = handle.read(MAX_CASE_FILE_BYTES + 1)  # a bigger file is refused when collected
    except OSError:
        return True  # collected, so that "cannot read the file" is said rather than its cases lost
    text = head.decode("utf-8", errors="replace")
    found = has_top_level_key(text, "cases")
    return bool(_LOOKS_LIKE_CASES.search(text)) if found is None else found


def named_on_command_line(config: pytest.Config) -> set[Path]:
    named = set()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0])
        if path.suffix in CASE_FILE_SUFFIXES:
            named.add(path.resolve())
    return named


class CaseFile(pytest.File):
    """A YAML case file; a broken one is a collection error listing every problem."""

    def collect(self) -> Iterator[CaseItem]:
        cases = load_case_file(self.path)
        checker = self.config.pluginmanager.get_plugin(check_mode.PLUGIN_NAME)
        if checker is not None:
            # In a run, the loaded CLIP checks its labels before generating (harness.runner).
            problems = [problem for case in cases for problem in checker.label_problems(case)]
            if problems:
                raise CaseFileError(self.path, problems)
        for case in cases:
            if checker is not None:
                checker.check_prompts(case)
            for tag in case.tags:
                # Tags are markers: register them so --strict-markers accepts them.
                self.config.addinivalue_line("markers", f"{tag}: t2i case tag")
            for seed in case.seeds:
                yield CaseItem.from_parent(
                    self,
                    name=f"{case.id}[seed={seed}]",
                    callobj=_test_function(case),
                    case=case,
                    seed=seed,
                )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, PromptTruncatedWarning):  # raised as an error under `-W error`
            return f"{self.nodeid}:{excinfo.value.line}: {excinfo.value}"
        if isinstance(excinfo.value, CaseFileError):
            return excinfo.value.render(
                self.path.relative_to(self.config.rootpath)
                if self.path.is_relative_to(self.config.rootpath)
                else self.path
            )
        return super().repr_failure(excinfo)


def _run_clip_only(
    _t2i_pipeline_handle: PipelineHandle, clip_scorer: ClipScorer, request: pytest.FixtureRequest
) -> None:
    request.node.run_case(_t2i_pipeline_handle, clip_scorer, None, _judges(request, clip_scorer, None))


def _run_with_resnet(
    _t2i_pipeline_handle: PipelineHandle,
    clip_scorer: ClipScorer,
    imagenet_classifier: ImagenetClassifier,
    request: pytest.FixtureRequest,
) -> None:
    judges = _judges(request, clip_scorer, imagenet_classifier)
    request.node.run_case(_t2i_pipeline_handle, clip_scorer, imagenet_classifier, judges)


def _judges(request: pytest.FixtureRequest, clip_scorer: ClipScorer, classifier: ImagenetClassifier | None) -> Judges:
    # Scores are reused only from the plugin's own fixtures: an override in conftest.py may wrap
    # them around another model while the object still carries the original's name.
    return Judges(
        clip=clip_scorer.cache_judge if is_own_fixture(request, "clip_scorer") else None,
        resnet=classifier.cache_judge
        if classifier is not None and is_own_fixture(request, "imagenet_classifier")
        else None,
    )


def _test_function(case: Case) -> Any:
    # The signature decides which fixtures load: a suite with no `resnet:` never loads ResNet.
    return _run_with_resnet if case.resnet is not None else _run_clip_only


def seed_keyword(seed: int) -> str:
    """The `-k` word that selects one seed: `pytest cases/ -k "owl and [seed1]"`."""
    return f"[seed{seed}]"


class CaseItem(pytest.Function):
    """One case at one seed. A pytest.Function, so it gets fixtures like any test."""

    def __init__(self, *, case: Case, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.seed = seed
        self._structure_node_id()
        # `-k` cannot parse "seed=1" ('=' is not part of its words) and matches substrings, so
        # "seed1" would also select seed 10: "[seed1]" is exact and valid in a -k expression.
        self.extra_keyword_matches.add(seed_keyword(seed))
        for tag in case.tags:
            self.add_marker(tag)
        if case.skip is not None:
            self.add_marker(pytest.mark.skip(reason=case.skip))
        if case.xfail is not None:
            self.add_marker(pytest.mark.xfail(reason=case.xfail))
        if self.config.pluginmanager.hasplugin("xdist"):
            # For an explicit `--dist loadgroup` (on pytest versions where xdist can honour it).
            self.add_marker(pytest.mark.xdist_group(name=f"{self.path.name}:{case.id}"))

    def _structure_node_id(self) -> None:
        # pytest >= 9.1 keeps node ids structured (path, names, params) and parses ids read back
        # from its cache (--lf, --ff) the same way; an item named "owl[seed=0]" without a callspec
        # would never match its own cached id. Give the id the shape a parametrized test has.
        node_id = getattr(self, "_id", None)
        if node_id is None or not hasattr(node_id, "with_params") or self.parent is None:
            return
        self._id = self.parent.id.child(self.case.id).with_params(f"seed={self.seed}")

    @property
    def case_key(self) -> tuple[str, str]:
        return (self.parent.nodeid if self.parent is not None else "", self.case.id)

    def new_record(self) -> ItemRecord:
        file = self.parent.nodeid if self.parent is not None else str(self.path)
        return ItemRecord.for_case(self.nodeid, self.case, self.seed, file)

    def run_case(
        self,
        handle: PipelineHandle,
        clip_scorer: ClipScorer,
        classifier: ImagenetClassifier | None,
        judges: Judges | None = None,
    ) -> None:
        __tracebackhide__ = True
        state = get_state(self.config)
        record = state.records.setdefault(self.nodeid, self.new_record())
        scored = state.runner.scored(self.case_key, self.case, self.seed, handle, clip_scorer, classifier, judges)
        apply_to_record(record, scored, state.report_dir, self.case)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"{self.case.id}[seed={self.seed}]"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        file = self.parent.nodeid if self.parent is not None else self.path.name
        where = f"{file}:{self.case.line}: case {self.case.id!r}, seed {self.seed}"
        if isinstance(excinfo.value, (CaseCheckFailed, PromptTruncatedWarning, CacheWriteWarning)):
            return f"{where}\n{excinfo.value}"
        if isinstance(excinfo.value, pytest.fail.Exception):
            # E.g. pytest-timeout's "Timeout (>10.0s)": raised wherever the item was, deep in a pipeline
            # call, where a traceback would print every frame's tensors.
            interrupted = innermost_frame(excinfo.value)
            return f"{where}\n{excinfo.value}" + (f" (interrupted {interrupted})" if interrupted else "")
        return super().repr_failure(excinfo)
